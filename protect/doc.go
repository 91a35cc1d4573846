// Package protect implements openmmr's media protection: SRTP with
// AEAD_AES_256_GCM (RFC 3711, RFC 7714) between participants for RTP, and
// SRTCP with AEAD_AES_256_GCM between each client and the router for RTCP.
// The normative description is docs/PROTOCOL.md, section "Media protection
// (SRTP AEAD-GCM) and meeting keys"; the key schedules (Standard and E2EE)
// live in package protect/keys.
//
// # Why SRTP and not SFrame
//
// SFrame (RFC 9605) encrypts whole media frames before packetisation and
// hides everything but its own small header. The router works per packet:
// it forwards each RTP packet as it arrives (one buffer for every
// subscriber, no reassembly), selects and drops by SSRC and sequence
// number, and reads RTP header extensions (audio level, RFC 6464; layer
// and frame markings) to pick speakers and simulcast/SVC layers. SRTP
// encrypts only the RTP payload and authenticates the whole RTP header as
// AEAD associated data (RFC 7714 §8.2): SSRC, sequence number, timestamp,
// marker, CSRCs and header extensions stay readable to the router and any
// change to them is detected by the receiver. Its per-packet transform keeps
// the router's job and cost unchanged (it forwards ciphertext like
// plaintext, zero cryptographic work per copy), needs no packetisation
// changes in codecs, and is implemented by github.com/pion/srtp/v3 and by
// every WebRTC stack. SFrame would additionally need a per-frame
// packetisation format and the router could no longer read layer
// information that lives in the payload (VP8/VP9 descriptors); with SRTP
// those remain in header extensions that the sender chooses to expose.
// The cost of SRTP's choice is what it exposes: header metadata (including
// the audio level, RFC 6464 §5 discusses the risk) is visible to the
// router and to on-path observers.
//
// # Keys
//
// A meeting has one current meeting key (MeetingKey: a 32-byte secret and a
// 32-bit KeyID). Each sender stream has its own SRTP master key and salt,
// derived with HKDF-SHA-256 (RFC 5869) from the meeting key, its KeyID, the
// sender's participant ID and the stream's SSRC (DeriveSender). Two
// different (participant, SSRC) pairs therefore never share a key stream,
// even if two participants pick the same SSRC, and a new meeting key gives
// every stream a fresh master key; within one stream SRTP's IV (SSRC, ROC,
// sequence number) never repeats as long as the sender does not restart its
// sequence under the same key (a sender that lost its state picks a new
// random SSRC). The KeyID travels in every SRTP packet as a 4-byte MKI
// (RFC 3711 §3.1), so a receiver holding several live keys during a change
// picks the right one.
//
// # Types and conventions
//
// Sealer protects a participant's own RTP packets; Opener checks and
// decrypts the packets of every other participant; RTCPFlow protects RTCP
// on one client-router flow (both ends use it, with their Side), and
// RTCPTranslator holds the router's per-flow RTCP contexts. All are safe
// for concurrent use (each holds a mutex: they run on the clients and on the
// router's RTCP path, never on the router's RTP fast path, which forwards
// SRTP without touching it). Buffers are owned by the caller: an output is
// written into dst from index 0 (dst's length is ignored) and returned as
// dst[:n]; if cap(dst) is too small a new buffer is allocated, so steady
// state is allocation-free only with cap(dst) >= len(pkt)+Overhead
// (RTCPOverhead for RTCP). dst may be pkt[:0] (in-place) but must not
// otherwise overlap pkt. No function keeps a reference to pkt or dst after
// it returns. Every rejected packet returns one of the exported sentinel
// errors (compare with errors.Is) and is counted by reason in Stats.
package protect
