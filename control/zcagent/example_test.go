package zcagent_test

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"github.com/openmmr/mmr/control/zcagent"
	"github.com/openmmr/mmr/stats"
	"github.com/openmmr/mmr/tlsutil"
	"github.com/openmmr/mmr/zone"
	"github.com/openmmr/mmr/zone/proto"
)

// routerStats stands for the router's Stats method.
func routerStats() (participants, meetings int, traffic stats.Counters) {
	return 0, 0, stats.Counters{}
}

// Example shows the embedded default of cmd/mmr: a one-MMR zone whose ZC
// runs in the MMR process, plus drain on an operator's request.
func Example() {
	cert, err := tlsutil.SelfSigned()
	if err != nil {
		panic(err)
	}
	secret, err := zone.NewSecret() // only this process needs it
	if err != nil {
		panic(err)
	}
	zc, err := zone.New(zone.Config{
		Listen:      netip.MustParseAddrPort("127.0.0.1:0"), // or the public :443 of a standalone ZC
		Certificate: cert, Secrets: [][]byte{secret},
	})
	if err != nil {
		panic(err)
	}
	defer zc.Close()

	pin, err := tlsutil.PinnedClientConfig(tlsutil.Fingerprint(cert))
	if err != nil {
		panic(err)
	}
	src := zcagent.LoadFunc(func() zcagent.Load {
		p, m, traffic := routerStats()
		return zcagent.Load{Participants: p, Meetings: m, Traffic: traffic}
	})
	agent, err := zcagent.New(zcagent.Config{
		ID: "mmr-1", ZCs: []string{zc.Addr().String()}, Secret: secret, TLS: pin,
		Endpoints: proto.Endpoints{
			UDP: []netip.AddrPort{netip.MustParseAddrPort("192.0.2.10:8801")},
			TCP: []netip.AddrPort{netip.MustParseAddrPort("192.0.2.10:8801")},
			TLS: []netip.AddrPort{netip.MustParseAddrPort("192.0.2.10:443")},
		},
	}, src)
	if err != nil {
		panic(err)
	}
	defer agent.Close()

	// Placement for the control layer, in process.
	if p, err := zc.Lookup("standup"); err == nil {
		fmt.Println(p.MMR, p.Endpoints.UDP)
	}

	// On SIGUSR1 (or an admin request): drain, exit when empty or at 10 min.
	agent.Drain()
	_ = zcagent.WaitDrained(context.Background(), src, time.Now().Add(10*time.Minute))
}
