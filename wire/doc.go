// Package wire implements the openmmr media wire format spoken on UDP port
// 8801 (DefaultPort): the first-byte demultiplexer (Classify), the router's
// own control packets (Bind, BindAck, Keepalive, KeepaliveAck), the secret
// media Token that binds a flow to a participant and the proofs of it that
// travel instead of it (Bind.Sign and Bind.Check, BindHandle, BindCounter,
// ConsentEcho), and a zero-allocation
// walker over compound RTCP packets (RTCPRoute) that tells the router where
// each RTCP packet must be forwarded. The normative description is
// docs/PROTOCOL.md, section "Media over UDP 8801".
//
// One UDP flow (5-tuple) carries exactly one media kind (media.Kind). On it
// the client first sends a Bind signed with its Token (HMAC-SHA-256; the
// token itself never travels), then plain RTP
// (RFC 3550) and RTCP (RFC 3550, RFC 4585, RFC 5104) multiplexed on the same
// port as in RFC 5761, plus periodic Keepalives. Packets are told apart by
// their first byte following the ranges of RFC 7983; the control packets of
// this package use first bytes 4..7, which RFC 7983 leaves unassigned.
//
// Conventions, valid for every exported name of the package unless its own
// comment says otherwise:
//
//   - Constants, sentinel errors and functions are safe for concurrent use.
//     Values of the struct types (Bind, BindAck, Keepalive, RTCPRoute) are
//     plain data: distinct values may be used concurrently, one value must
//     not be written by one goroutine while another reads or writes it.
//   - Buffers are always owned by the caller. Parsers (Classify, Unmarshal,
//     RTCPRoute.Parse) only read the input slice during the call and keep no
//     reference to it; MarshalTo writes into the caller's dst and keeps no
//     reference to it either.
//   - Nothing on the packet path allocates (Classify, every Unmarshal and
//     MarshalTo, Bind.Sign and Bind.Check, ConsentEcho, RTCPRoute.Parse);
//     the tests prove it with
//     testing.AllocsPerRun.
//   - No function panics on any input; malformed input yields one of the
//     exported sentinel errors, returned unwrapped so that callers can
//     compare with == or errors.Is without allocation.
package wire
