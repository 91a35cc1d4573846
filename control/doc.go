// Package control is the MMR's control-channel server: the TLS listener
// (port 443 by default) on which a client, once the zone controller has
// named this MMR, joins its meeting with a join token, learns its media
// token, media endpoints and roster, publishes and subscribes to streams,
// receives the meeting's events, and resumes after a dropped connection.
//
// The protocol (package control/proto) and the join tokens (package
// control/token) are specified in docs/control-protocol.md. The server drives
// the media router only through its public API, listed by the Router
// interface, which *router.Router satisfies.
//
// Per connection the server runs one reader goroutine, plus a writer
// goroutine only while frames are queued for it, so an idle participant costs
// one goroutine and its TLS state. Meeting rosters live here, one mutex per
// meeting; nothing here is on the packet path.
package control
