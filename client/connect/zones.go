package connect

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/openmmr/mmr/tlsutil"
	"github.com/openmmr/mmr/zone/zclient"
)

// lossThreshold: a probe whose RTT exceeds the zone's median by more than
// this counts as lost. Probes run over TCP, where a lost segment is
// retransmitted after at least the 200 ms minimum RTO (RFC 6298 allows 1 s;
// Linux uses 200 ms), so a loss shows up as a late echo.
const lossThreshold = 200 * time.Millisecond

// ZoneReport is the outcome of the performance test of one zone.
type ZoneReport struct {
	Name      string        `json:"name"`
	Rank      int           `json:"rank"` // position in the web tier's list, 0 first
	Healthy   bool          `json:"healthy"`
	ZC        string        `json:"zc,omitempty"` // the ZC that answered first
	Handshake time.Duration `json:"handshake_ns,omitempty"`
	Probes    int           `json:"probes,omitempty"`
	Median    time.Duration `json:"rtt_median_ns,omitempty"`
	Jitter    time.Duration `json:"jitter_ns,omitempty"`
	Loss      float64       `json:"loss,omitempty"`
	Score     time.Duration `json:"score_ns,omitempty"`
	Err       string        `json:"error,omitempty"` // why the zone was skipped
	Chosen    bool          `json:"chosen,omitempty"`
}

// Score is the zone ranking formula (lower is better):
//
//	score = median RTT + 2 × jitter + loss × 1 s
//
// Median resists one outlier, twice the jitter charges the jitter buffer
// the path would need (zclient.ProbeResult.Score), and each percent of
// probes lost costs 10 ms.
func Score(median, jitter time.Duration, loss float64) time.Duration {
	return median + 2*jitter + time.Duration(loss*float64(time.Second))
}

// zcTLS builds the TLS configuration that verifies zc as the lookup says.
func zcTLS(zc ZC) (*tls.Config, error) {
	switch {
	case zc.Fingerprint != "" && zc.CAPEM != "":
		return nil, errors.New("both fingerprint and ca_pem given")
	case zc.Fingerprint != "":
		return tlsutil.PinnedClientConfig(zc.Fingerprint)
	case zc.CAPEM != "":
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM([]byte(zc.CAPEM)) {
			return nil, errors.New("ca_pem holds no certificate")
		}
		name := zc.ServerName
		if name == "" {
			name, _, _ = net.SplitHostPort(zc.Addr)
		}
		return &tls.Config{RootCAs: pool, ServerName: name, MinVersion: tls.VersionTLS13}, nil
	}
	return nil, errors.New("neither fingerprint nor ca_pem given")
}

// zoneConn is a probed zone with its open ZC connection.
type zoneConn struct {
	rep *ZoneReport
	c   *zclient.Client
}

// selectZones dials every ZC of every zone at once, probes each zone on
// the first ZC that completed its handshake, and returns the zones that
// answered, best first, with the reports of all. answered is false when no
// ZC completed a handshake within cfg.ZoneTimeout. The caller closes the
// returned connections.
func selectZones(ctx context.Context, cfg *Config, d *dialer, zones []LookupZone) (ranked []zoneConn, reports []ZoneReport, answered bool) {
	reports = make([]ZoneReport, len(zones))
	conns := make([]*zclient.Client, len(zones))
	dialCtx, cancelDial := context.WithTimeout(ctx, cfg.ZoneTimeout)
	defer cancelDial()
	var wg sync.WaitGroup
	for i, z := range zones {
		reports[i] = ZoneReport{Name: z.Name, Rank: i, Healthy: z.Healthy}
		if cfg.Zone != "" && z.Name != cfg.Zone {
			reports[i].Err = "not the zone asked for (-zone " + cfg.Zone + ")"
			continue
		}
		if len(z.ZCs) == 0 {
			reports[i].Err = "no ZC listed"
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			c, addr, err := dialFirst(dialCtx, d, z.ZCs)
			if err != nil {
				reports[i].Err = err.Error()
				return
			}
			reports[i].ZC, reports[i].Handshake = addr, time.Since(start)
			pctx, cancel := context.WithTimeout(ctx, cfg.ProbeTimeout)
			defer cancel()
			res, err := c.Probe(pctx, zclient.ProbeOptions{Count: cfg.Probes, Interval: cfg.ProbeInterval})
			if err != nil {
				c.Close()
				reports[i].Err = "performance test: " + err.Error()
				return
			}
			lost := 0
			for _, r := range res.RTTs {
				if r > res.Median+lossThreshold {
					lost++
				}
			}
			rep := &reports[i]
			rep.Probes, rep.Median, rep.Jitter = len(res.RTTs), res.Median, res.Jitter
			rep.Loss = float64(lost) / float64(len(res.RTTs))
			rep.Score = Score(rep.Median, rep.Jitter, rep.Loss)
			conns[i] = c
		}()
	}
	wg.Wait()
	for i := range zones {
		if reports[i].ZC != "" {
			answered = true
		}
		if conns[i] != nil {
			ranked = append(ranked, zoneConn{rep: &reports[i], c: conns[i]})
		}
	}
	// Best score first; within ScoreTie of each other, web order.
	slices.SortStableFunc(ranked, func(a, b zoneConn) int {
		if (a.rep.Score - b.rep.Score).Abs() < cfg.ScoreTie {
			return a.rep.Rank - b.rep.Rank
		}
		if a.rep.Score < b.rep.Score {
			return -1
		}
		return 1
	})
	return ranked, reports, answered
}

// dialFirst dials every ZC of a zone at once and keeps the first that
// completes its TLS handshake; the others are closed.
func dialFirst(ctx context.Context, d *dialer, zcs []ZC) (*zclient.Client, string, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type res struct {
		c    *zclient.Client
		addr string
		err  error
	}
	ch := make(chan res, len(zcs))
	for _, zc := range zcs {
		go func() {
			tc, err := zcTLS(zc)
			if err != nil {
				ch <- res{addr: zc.Addr, err: fmt.Errorf("ZC %s: %w", zc.Addr, err)}
				return
			}
			c, err := zclient.DialWith(ctx, d.DialContext, zc.Addr, tc)
			ch <- res{c, zc.Addr, err}
		}()
	}
	var best res
	var errs []error
	for range zcs {
		r := <-ch
		switch {
		case r.err != nil:
			errs = append(errs, r.err)
		case best.c == nil:
			best = r
			cancel() // the others give up; their late successes are closed below
		default:
			r.c.Close()
		}
	}
	if best.c != nil {
		return best.c, best.addr, nil
	}
	return nil, "", errors.Join(errs...)
}
