// Package proto is the wire format of the zone controller (ZC) port: the
// framing, the messages MMRs, clients and ZCs exchange over one TLS
// connection, the zone-secret proofs that authenticate an MMR and its ZC to
// each other, and the limits a decoder enforces. docs/zone-protocol.md is the
// specification; this package is its reference implementation.
//
// A connection carries frames (see ReadFrame): a 4-byte big-endian length, a
// 1-byte message Type, and a body. Control messages have JSON bodies (RFC
// 8259); the probe messages of the network performance test have fixed binary
// bodies. Every decoder validates what it decodes and returns an error, never
// panics, on any input.
//
// Everything in this package is a plain function or value type: safe for
// concurrent use unless a method says otherwise. Decoded messages never alias
// the input buffer unless a function says so.
package proto
