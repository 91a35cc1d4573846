// Package secure is one participant's media protection on the client side
// (docs/PROTOCOL.md, "Media protection (SRTP AEAD-GCM) and meeting keys",
// "Client checklist"): it is built from the joined (or resumed) body of the
// control channel, follows the meeting's control events, keeps the meeting
// keys (keys.Ring in Standard mode, keys.Group in E2EE mode) and protects
// the participant's packets with them:
//
//   - RTP: SealRTP seals the participant's own packets (protect.Sealer),
//     OpenRTP checks and decrypts the other participants' packets
//     (protect.Opener, senders known from the roster and stream events);
//   - RTCP: SealRTCP and OpenRTCP protect the RTCP of each media kind's
//     client-router flow (protect.RTCPFlow, ClientSide: direction 1 out,
//     direction 2 in) under the rtcp_secret of the latest joined/resumed.
//
// Flow(k) bundles both for one kind's transport, classifying each packet
// (client/udpmedia and client/streammedia take it as their Protection).
//
// # Concurrency
//
// A State is safe for concurrent use and built for three kinds of callers:
//
//   - the control goroutine feeds it (Handle for each event, Resume after
//     a resume); these take the State's mutex briefly;
//   - one Run goroutine drives its timers (the key ring's switches and
//     retirements, the E2EE leader's re-keys) and sends the leader's key
//     wraps through a Sender; it ends when its context ends;
//   - any number of media goroutines seal and open. They never take the
//     State's mutex: SealRTP and OpenRTP go to the protect.Sealer and
//     protect.Opener (each has its own short mutex), SealRTCP and OpenRTCP
//     to the kind's protect.RTCPFlow, found through an atomic pointer that
//     Resume replaces. With cap(dst) >= len(pkt)+protect.Overhead they
//     allocate nothing in steady state.
//
// Buffers are the caller's: outputs are written from dst[0] (dst may be
// pkt[:0], in place) and nothing is retained after a call returns.
//
// Secrets (the RTCP secret, meeting keys, the X25519 private key) are never
// logged and never leave the State except as the protect types hold them.
package secure
