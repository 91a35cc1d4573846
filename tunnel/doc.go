// Package tunnel is the HTTP tunnel: the path for clients that reach no
// zone controller within 5.5 s (a network that blocks the zones' addresses,
// or lets only HTTPS through). Tunnel servers (cmd/ht) stand outside the
// zones; a client pings the ones the lookup lists (Dialer.Pick), keeps the
// first to answer, and opens streams through it (Tunnel.Dial) to the zone's
// ZCs and MMRs, inside which it runs the same TLS-with-ALPN protocols as
// without the tunnel (ZC, control channel, TLS media). The tunnel server
// sees ciphertext only. docs/PROTOCOL.md, "HTTP tunnel (HTTPS 443)", is the
// wire format.
//
// # Design decisions
//
// Transport: a WebSocket upgrade (RFC 6455) over HTTPS/1.1, with
// github.com/coder/websocket. It passes every middlebox that passes HTTPS
// - TLS-inspecting firewalls see an ordinary HTTP/1.1 request, and an
// HTTP/1.1 CONNECT proxy sees an ordinary CONNECT to port 443 - whereas
// HTTP/2 extended CONNECT (RFC 8441) needs h2 on every hop, which
// inspecting proxies and many load balancers downgrade to HTTP/1.1. The
// server offers only "http/1.1" in ALPN for the same reason.
//
// One WebSocket per tunnelled stream, no multiplexer inside. Each stream
// is one TCP connection end to end, so: a stream that stalls (a client
// that does not read its media) is cut alone by its write timeout while
// the others flow, with no head-of-line blocking between the control
// channel and media; limits are counts of WebSockets; resume needs nothing
// from the tunnel - when a tunnel dies every stream fails, the client picks
// another tunnel and its control channel resumes end to end (docs/
// PROTOCOL.md, "Dropped connections and resume") exactly as after any
// dropped TCP connection; and there is no framing of our own to parse or
// fuzz. The price is one TLS handshake and upgrade per stream, three or
// four per client, paid once per join.
//
// Authentication: the client's join token (control/token) as
// "Authorization: Bearer", on the ping and on every upgrade, verified with
// the join secret. Refusals are 401 with the JSON error body the web tier
// uses, and counted. The identity is the token's meeting and identity.
//
// Not an open relay: the destination is named by the client
// (Openmmr-Target: host:port) and resolved by the server; only IP:port
// pairs on the allow-list (Config.Zones, resolved at start and every
// Config.Refresh) are dialled, and the server dials the very IP it
// checked, so a name that resolves to an allowed address once and an
// internal one next (DNS rebinding) cannot redirect a stream. The MMR
// addresses may be listed too, or learnt (Config.Placer, ZCPlacer): a
// destination not on the list is allowed when it is a TLS or TCP endpoint
// of the placement the zone's ZCs give for the token's meeting (cached 10
// s). That scopes a client to its own meeting's MMR, and needs no list of
// MMRs that changes whenever the zone grows.
//
// Limits (Config): total TCP connections (closed at accept beyond it),
// total streams, streams and bytes per second per token identity and per
// source IP (token buckets, golang.org/x/time/rate, shared by the key's
// streams; a relay waits for tokens, so TCP back-pressure slows the sender
// instead of dropping bytes), a handshake/header timeout, an idle timeout
// per stream (close 4000) and a write timeout per write to a client (the
// stream is cut). Every refusal and stream end is counted by reason
// (Stats); refusals are logged with slog at a limited rate.
//
// Leaving: Server.Shutdown closes every stream with close code 1012
// (service restart) so clients move to another tunnel at once; Read and
// Write on the client's net.Conn then return an error matching
// ErrServerLeaving. 1012 rather than 1001 (going away) because
// websocket.NetConn reports 1001 as a plain io.EOF.
package tunnel
