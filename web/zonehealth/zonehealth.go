// Package zonehealth checks the zone controllers of every configured zone
// in the background: a TLS dial with the ZC's ALPN (zone/proto.ALPN),
// authenticated as a client would (pinned fingerprint or CA), and one probe
// echoed by the ZC (zone/zclient). A zone is healthy when at least one of
// its ZCs answered in the last round.
//
// A Checker is safe for concurrent use; Status is lock-free (an immutable
// snapshot behind an atomic.Pointer).
package zonehealth

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/openmmr/mmr/config"
	"github.com/openmmr/mmr/tlsutil"
	"github.com/openmmr/mmr/zone/zclient"
)

// ZC is one zone controller to check.
type ZC struct {
	Addr string
	TLS  *tls.Config // authenticates the ZC
}

// Zone is one zone to check.
type Zone struct {
	Name string
	ZCs  []ZC
}

// Status is what the last check saw of a zone.
type Status struct {
	Checked   bool      // false until the first round has finished
	Healthy   bool      // some ZC answered (true while unchecked: assumed)
	CheckedAt time.Time // end of the last round (zero while unchecked)
}

// Checker checks zones every interval.
type Checker struct {
	zones   []Zone
	timeout time.Duration
	log     *slog.Logger
	status  atomic.Pointer[[]Status]
	rounds  atomic.Uint64
	done    chan struct{}
	wg      sync.WaitGroup
	once    sync.Once
}

// New starts checking zones: a first round at once, then one every
// interval, each ZC check bounded by timeout. log may be nil.
func New(zones []Zone, interval, timeout time.Duration, log *slog.Logger) *Checker {
	if log == nil {
		log = slog.Default()
	}
	c := &Checker{zones: zones, timeout: timeout, log: log, done: make(chan struct{})}
	st := make([]Status, len(zones))
	for i := range st {
		st[i].Healthy = true
	}
	c.status.Store(&st)
	c.wg.Add(1)
	go c.loop(interval)
	return c
}

func (c *Checker) loop(interval time.Duration) {
	defer c.wg.Done()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-c.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		c.round(ctx)
		select {
		case <-c.done:
			return
		case <-t.C:
		}
	}
}

// round checks every ZC of every zone at once and publishes the result.
func (c *Checker) round(ctx context.Context) {
	ok := make([]atomic.Bool, len(c.zones))
	var wg sync.WaitGroup
	for i, z := range c.zones {
		for _, zc := range z.ZCs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := c.check(ctx, zc); err != nil {
					c.log.Debug("zonehealth: ZC did not answer", "zone", z.Name, "zc", zc.Addr, "err", err)
					return
				}
				ok[i].Store(true)
			}()
		}
	}
	wg.Wait()
	if ctx.Err() != nil {
		return // closing: not a verdict
	}
	now := time.Now().UTC()
	st := make([]Status, len(c.zones))
	prev := *c.status.Load()
	for i := range st {
		st[i] = Status{Checked: true, Healthy: ok[i].Load(), CheckedAt: now}
		if prev[i].Checked && prev[i].Healthy != st[i].Healthy {
			c.log.Info("zonehealth: zone changed", "zone", c.zones[i].Name, "healthy", st[i].Healthy)
		}
	}
	c.status.Store(&st)
	c.rounds.Add(1)
}

func (c *Checker) check(ctx context.Context, zc ZC) error {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	cl, err := zclient.Dial(ctx, zc.Addr, zc.TLS)
	if err != nil {
		return err
	}
	defer cl.Close()
	_, err = cl.Probe(ctx, zclient.ProbeOptions{Count: 1})
	return err
}

// Status returns the zones' status, in the zones' order. The slice is
// shared: read it, do not modify it.
func (c *Checker) Status() []Status { return *c.status.Load() }

// Rounds returns how many rounds have completed.
func (c *Checker) Rounds() uint64 { return c.rounds.Load() }

// Close stops checking and waits for the checks in progress. Idempotent.
func (c *Checker) Close() error {
	c.once.Do(func() {
		close(c.done)
		c.wg.Wait()
	})
	return nil
}

// TLSConfig returns the client configuration verifying zc as configured:
// its pinned fingerprint, or its CA roots with ServerName (default: the
// host part of Addr).
func TLSConfig(zc config.ZC) (*tls.Config, error) {
	if zc.Fingerprint != "" {
		return tlsutil.PinnedClientConfig(zc.Fingerprint)
	}
	if zc.CAPEM == "" {
		return nil, errors.New("zonehealth: a ZC needs a fingerprint or a CA")
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(zc.CAPEM)) {
		return nil, fmt.Errorf("zonehealth: %s: no certificate in the CA PEM", zc.Addr)
	}
	name := zc.ServerName
	if name == "" {
		host, _, err := net.SplitHostPort(zc.Addr)
		if err != nil {
			return nil, err
		}
		name = host
	}
	return &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: pool, ServerName: name}, nil
}
