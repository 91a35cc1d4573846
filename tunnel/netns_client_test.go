package tunnel

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"time"

	"github.com/openmmr/mmr/tlsutil"
)

// nsJob is what the parent asks the client child (run inside a network
// namespace) to do, passed as JSON in TUNNEL_NS_JOB.
type nsJob struct {
	Tunnels []Endpoint
	Token   string
	Proxy   string // "" or http://host:port
	Zone    string // a zone TLS endpoint (the echo)
	ZoneFP  string
}

// nsResult is the child's report on stdout.
type nsResult struct {
	DirectErr string // dialling the zone directly (must fail)
	Picked    string // the tunnel URL Pick chose
	PickErr   string
	Echoed    int // packets echoed through the tunnel, end to end in TLS
	EchoErr   string
}

// runNetnsClient is the client child: try the zone directly, then Pick and
// a TLS echo of 50 media-sized packets through the chosen tunnel.
func runNetnsClient() {
	var job nsJob
	var res nsResult
	defer func() { _ = json.NewEncoder(os.Stdout).Encode(&res) }()
	if err := json.Unmarshal([]byte(os.Getenv("TUNNEL_NS_JOB")), &job); err != nil {
		res.PickErr = err.Error()
		return
	}
	if c, err := net.DialTimeout("tcp", job.Zone, 2*time.Second); err == nil {
		_ = c.Close()
	} else {
		res.DirectErr = err.Error()
	}
	d := &Dialer{Token: job.Token}
	if job.Proxy != "" {
		d.Proxy, _ = url.Parse(job.Proxy)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tun, err := d.Pick(ctx, job.Tunnels)
	if err != nil {
		res.PickErr = err.Error()
		return
	}
	res.Picked = tun.Endpoint.URL
	c, err := tun.Dial(ctx, job.Zone)
	if err != nil {
		res.EchoErr = err.Error()
		return
	}
	defer c.Close()
	cfg, err := tlsutil.PinnedClientConfig(job.ZoneFP)
	if err != nil {
		res.EchoErr = err.Error()
		return
	}
	cfg.NextProtos = []string{echoALPN}
	tc := tls.Client(c, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		res.EchoErr = err.Error()
		return
	}
	_ = tc.SetDeadline(time.Now().Add(30 * time.Second))
	pkt := make([]byte, mediaPacket)
	got := make([]byte, mediaPacket)
	for i := range 50 {
		pkt[0] = byte(i)
		if _, err := tc.Write(pkt); err != nil {
			res.EchoErr = err.Error()
			return
		}
		if _, err := io.ReadFull(tc, got); err != nil || got[0] != byte(i) {
			res.EchoErr = fmt.Sprintf("packet %d: %v", i, err)
			return
		}
		res.Echoed++
	}
}
