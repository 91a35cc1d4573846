// Package zcagent is the MMR's registration agent: it registers the MMR with
// every zone controller (ZC) of its zone over TLS, authenticated both ways
// with the zone secret, announces the MMR's public endpoints and capacity,
// and reports its load every interval (participants, meetings, packets and
// bits per second in and out, CPU). It keeps one connection per ZC (an HA
// pair lists two), never blocks the MMR when a ZC is unreachable, and
// re-registers with capped exponential backoff when the ZC returns.
//
// The agent does not know the router: it reads a LoadSource. Drain marks the
// MMR draining in its reports so the ZCs place no new meetings on it;
// WaitDrained waits until its last meeting ends or a deadline.
//
// Embedding (cmd/mmr):
//
//	agent, err := zcagent.New(zcagent.Config{
//		ZCs: []string{"zc1.example:443", "zc2.example:443"}, Secret: secret,
//		Endpoints: proto.Endpoints{UDP: ..., TCP: ..., TLS: ...},
//	}, zcagent.LoadFunc(func() zcagent.Load { ... router stats ... }))
//	...
//	agent.Drain()                                   // on SIGUSR1 or an admin request
//	zcagent.WaitDrained(ctx, src, time.Now().Add(d)) // then exit
//	agent.Close()                                   // says bye to every ZC
//
// docs/zone-protocol.md specifies the protocol.
package zcagent
