// Package zone is the zone controller (ZC) of an openmmr meeting zone.
//
// A ZC keeps the registry of the zone's MMRs (each registers over TLS with
// the zone secret and reports its load every interval, see control/zcagent),
// answers "which MMR hosts meeting M" for clients, and echoes the probes of
// the clients' network performance test so they can compare zones. Two ZCs
// of a zone form an HA pair: every MMR registers with both, and both compute
// placements with the same deterministic function of their registry views
// (score.go), so they agree whenever their views agree.
//
// docs/zone-protocol.md specifies the wire protocol (package zone/proto), the
// load score and placement rule, and the consistency the HA pair gives.
//
// Embedding: zone.New(cfg) starts a ZC listening on cfg.Listen; Server.Lookup
// answers in-process callers without TLS; Server.HandleConn serves a
// connection accepted elsewhere (a TLS listener shared by ALPN,
// proto.ALPN). All Server methods are safe for concurrent use.
package zone
