// Package zclient is the client side of the zone controller port: look up
// the MMR of a meeting, and run the network performance test (probes) that
// compares zones (docs/zone-protocol.md). It is the reference for other
// client implementations and what the integration tests drive.
package zclient

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/openmmr/mmr/zone/proto"
)

// DefaultTimeout bounds a request whose context has no deadline.
const DefaultTimeout = 10 * time.Second

// Client is one connection to a ZC. Its methods are safe for concurrent use
// (requests are serialised on the connection).
type Client struct {
	mu   sync.Mutex
	conn *tls.Conn
	fr   *proto.FrameReader
	buf  []byte
	base time.Time // origin of probe stamps (monotonic)
}

// Dial connects to the ZC at addr ("host:port") over TLS 1.3 with ALPN
// proto.ALPN. cfg must authenticate the ZC (tlsutil.PinnedClientConfig or a
// CA pool); it is cloned, not kept.
func Dial(ctx context.Context, addr string, cfg *tls.Config) (*Client, error) {
	return DialWith(ctx, nil, addr, cfg)
}

// DialFunc opens the TCP connection under the TLS session, e.g. through an
// HTTP CONNECT proxy (net.Dialer.DialContext has this signature).
type DialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// DialWith is Dial over a connection opened by dial (nil: a net.Dialer).
// The TLS handshake runs on it, bounded by ctx; on error the connection is
// closed.
func DialWith(ctx context.Context, dial DialFunc, addr string, cfg *tls.Config) (*Client, error) {
	if cfg == nil {
		return nil, errors.New("zclient: a TLS configuration that authenticates the ZC is required")
	}
	if dial == nil {
		var d net.Dialer
		dial = d.DialContext
	}
	c := cfg.Clone()
	c.NextProtos = []string{proto.ALPN}
	c.MinVersion = tls.VersionTLS13
	if c.ServerName == "" && !c.InsecureSkipVerify {
		if host, _, err := net.SplitHostPort(addr); err == nil {
			c.ServerName = host
		}
	}
	raw, err := dial(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("zclient: dial %s: %w", addr, err)
	}
	tc := tls.Client(raw, c)
	if err := tc.HandshakeContext(ctx); err != nil {
		raw.Close()
		return nil, fmt.Errorf("zclient: dial %s: %w", addr, err)
	}
	return &Client{conn: tc, fr: proto.NewFrameReader(tc), base: time.Now()}, nil
}

// Close closes the connection. Idempotent.
func (c *Client) Close() error {
	err := c.conn.Close()
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// roundTrip sends frame and reads one answer frame, bounded by ctx.
func (c *Client) roundTrip(ctx context.Context, frame []byte) (proto.Type, []byte, error) {
	dl, ok := ctx.Deadline()
	if !ok {
		dl = time.Now().Add(DefaultTimeout)
	}
	c.conn.SetDeadline(dl)
	stop := context.AfterFunc(ctx, func() { c.conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if _, err := c.conn.Write(frame); err != nil {
		return 0, nil, ctxErr(ctx, err)
	}
	typ, body, err := c.fr.Read(proto.MaxSmallFrame)
	if err != nil {
		return 0, nil, ctxErr(ctx, err)
	}
	return typ, body, nil
}

func ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return fmt.Errorf("zclient: %w", err)
}

// Lookup asks which MMR hosts meeting (placing it when new). A refusal is a
// *proto.Error: errors.Is(err, &proto.Error{Code: proto.ErrCodeNoCapacity})
// when no MMR has room (the connection stays usable); other codes close it.
func (c *Client) Lookup(ctx context.Context, meeting string) (proto.Placement, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var err error
	if c.buf, err = proto.AppendMessage(c.buf[:0], &proto.Lookup{Meeting: meeting}); err != nil {
		return proto.Placement{}, err
	}
	typ, body, err := c.roundTrip(ctx, c.buf)
	if err != nil {
		return proto.Placement{}, err
	}
	p, err := proto.DecodeAs[proto.Placement](typ, body)
	if err != nil {
		return proto.Placement{}, err
	}
	if p.Meeting != meeting {
		return proto.Placement{}, fmt.Errorf("zclient: placement for %q, asked for %q", p.Meeting, meeting)
	}
	return *p, nil
}

// ProbeOptions shape a network performance test. Zero fields take defaults.
type ProbeOptions struct {
	// Count is the number of probes (default 20).
	Count int
	// Interval is the time between probe sends (default 50 ms): 20 probes
	// take about a second and sample a second of queueing variation.
	Interval time.Duration
	// Pad is the padding per probe (0..proto.MaxProbePad); probing with
	// media-sized packets (about 1200 bytes) sees serialisation delay too.
	Pad int
}

// ProbeResult summarises a performance test. RTTs are in send order.
type ProbeResult struct {
	RTTs                   []time.Duration
	Min, Median, Mean, Max time.Duration
	Jitter                 time.Duration // mean |RTT[i] - RTT[i-1]| (RFC 5481 IPDV, absolute)
}

// Score ranks zones: lower is better. Median RTT resists one outlier;
// twice the jitter charges a path for the jitter buffer a client would need
// on it (about two mean deviations covers most of the variation).
func (r ProbeResult) Score() time.Duration { return r.Median + 2*r.Jitter }

// Probe runs a performance test: it sends Count probes Interval apart (or
// right after the previous echo when that took longer), each echoed by the
// ZC, and times every round trip with the local monotonic clock.
func (c *Client) Probe(ctx context.Context, o ProbeOptions) (ProbeResult, error) {
	if o.Count <= 0 {
		o.Count = 20
	}
	if o.Interval <= 0 {
		o.Interval = 50 * time.Millisecond
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	res := ProbeResult{RTTs: make([]time.Duration, 0, o.Count)}
	start := time.Now()
	for i := range o.Count {
		if wait := time.Until(start.Add(time.Duration(i) * o.Interval)); wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return res, ctx.Err()
			case <-t.C:
			}
		}
		sent := time.Now()
		stamp := uint64(sent.Sub(c.base))
		var err error
		if c.buf, err = proto.AppendProbe(c.buf[:0], proto.TypeProbe, proto.Probe{Seq: uint32(i), Stamp: stamp, Pad: o.Pad}); err != nil {
			return res, err
		}
		typ, body, err := c.roundTrip(ctx, c.buf)
		if err != nil {
			return res, err
		}
		rtt := time.Since(sent)
		if typ != proto.TypeProbeEcho {
			return res, unexpected(typ, body)
		}
		echo, err := proto.DecodeProbe(body)
		if err != nil {
			return res, err
		}
		if echo.Seq != uint32(i) || echo.Stamp != stamp || echo.Pad != o.Pad {
			return res, fmt.Errorf("zclient: probe %d echoed as seq %d", i, echo.Seq)
		}
		res.RTTs = append(res.RTTs, rtt)
	}
	return Summarise(res.RTTs), nil
}

// unexpected turns an answer of the wrong type into an error: the
// *proto.Error when the ZC refused, else a description.
func unexpected(typ proto.Type, body []byte) error {
	if typ == proto.TypeError {
		if m, err := proto.Decode(typ, body); err == nil {
			return m.(*proto.Error)
		}
	}
	return fmt.Errorf("zclient: unexpected %s from the ZC", typ)
}

// Summarise computes the statistics of round-trip times given in send
// order (the result keeps rtts).
func Summarise(rtts []time.Duration) ProbeResult {
	r := ProbeResult{RTTs: rtts}
	n := len(rtts)
	if n == 0 {
		return r
	}
	s := slices.Clone(r.RTTs)
	slices.Sort(s)
	r.Min, r.Max, r.Median = s[0], s[n-1], s[n/2]
	var sum, dev time.Duration
	for i, v := range r.RTTs {
		sum += v
		if i > 0 {
			dev += (v - r.RTTs[i-1]).Abs()
		}
	}
	r.Mean = sum / time.Duration(n)
	if n > 1 {
		r.Jitter = dev / time.Duration(n-1)
	}
	return r
}

// Zone is one zone a client can choose: the address of one of its ZCs and a
// TLS configuration that authenticates it.
type Zone struct {
	Name string
	Addr string
	TLS  *tls.Config
}

// ZoneResult is the outcome of probing one zone.
type ZoneResult struct {
	Zone   Zone
	Result ProbeResult
	Err    error
}

// SelectZone probes every zone at once and returns the index of the one
// with the lowest Score (-1 when none answered) and every result.
func SelectZone(ctx context.Context, zones []Zone, o ProbeOptions) (best int, results []ZoneResult) {
	results = make([]ZoneResult, len(zones))
	var wg sync.WaitGroup
	for i, z := range zones {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i].Zone = z
			c, err := Dial(ctx, z.Addr, z.TLS)
			if err != nil {
				results[i].Err = err
				return
			}
			defer c.Close()
			results[i].Result, results[i].Err = c.Probe(ctx, o)
		}()
	}
	wg.Wait()
	best = -1
	for i, r := range results {
		if r.Err == nil && (best < 0 || r.Result.Score() < results[best].Result.Score()) {
			best = i
		}
	}
	return best, results
}
