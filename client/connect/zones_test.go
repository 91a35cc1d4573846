package connect_test

import (
	"context"
	"encoding/pem"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/openmmr/mmr/client/connect"
	"github.com/openmmr/mmr/client/connect/connecttest"
	"github.com/openmmr/mmr/internal/leaktest"
)

// delayRelay is a TCP relay that delivers every chunk it reads delay
// later, in both directions: a path with added latency over real sockets
// (tc netem needs the sch_netem kernel module, absent on this machine).
type delayRelay struct {
	ln     net.Listener
	target string
	delay  time.Duration
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  []net.Conn
}

func startDelayRelay(t *testing.T, target string, delay time.Duration) *delayRelay {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	r := &delayRelay{ln: ln, target: target, delay: delay}
	r.wg.Add(1)
	go r.accept()
	t.Cleanup(r.close)
	return r
}

func (r *delayRelay) addr() string { return r.ln.Addr().String() }

func (r *delayRelay) accept() {
	defer r.wg.Done()
	for {
		c, err := r.ln.Accept()
		if err != nil {
			return
		}
		u, err := net.Dial("tcp", r.target)
		if err != nil {
			c.Close()
			continue
		}
		r.mu.Lock()
		r.conns = append(r.conns, c, u)
		r.mu.Unlock()
		r.wg.Add(2)
		go r.pump(c, u)
		go r.pump(u, c)
	}
}

type chunk struct {
	at time.Time
	b  []byte
}

// pump copies src to dst, each chunk delay after it was read.
func (r *delayRelay) pump(dst, src net.Conn) {
	defer r.wg.Done()
	q := make(chan chunk, 1024)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for c := range q {
			time.Sleep(time.Until(c.at)) // the added latency itself
			if _, err := dst.Write(c.b); err != nil {
				break
			}
		}
		dst.Close()
		for range q {
		}
	}()
	for {
		b := make([]byte, 16<<10)
		n, err := src.Read(b)
		if n > 0 {
			q <- chunk{time.Now().Add(r.delay), b[:n]}
		}
		if err != nil {
			break
		}
	}
	close(q)
	<-done
	src.Close()
}

func (r *delayRelay) close() {
	r.ln.Close()
	r.mu.Lock()
	for _, c := range r.conns {
		c.Close()
	}
	r.mu.Unlock()
	r.wg.Wait()
}

func TestZoneSelection(t *testing.T) {
	leaktest.Check(t)
	e := startEnv(t, 2)
	slow, fast := e.zones[0], e.zones[1]
	relay := startDelayRelay(t, slow.TLSAddr.String(), 100*time.Millisecond)
	slowZone := slow.LookupZone()
	slowZone.ZCs[0].Addr = relay.addr()
	bad := fast.LookupZone() // a zone whose ZC does not have the pinned certificate
	bad.Name = "badcert"
	bad.ZCs[0].Fingerprint = strings.Repeat("ab", 32)

	t.Run("the faster zone wins over the web order; a bad certificate is skipped", func(t *testing.T) {
		require.NoError(t, e.web.SetZones([]connect.LookupZone{bad, slowZone, fast.LookupZone()}))
		cfg := clientConfig(t, e, 0, newReceiver())
		cfg.ScoreTie = 50 * time.Millisecond
		// The relayed zone's probes take 200 ms each: under a CPU hog its
		// series overran the default 3 s (seen once in 5 runs).
		cfg.ProbeTimeout = 15 * time.Second
		s, res, err := connect.Connect(context.Background(), cfg)
		require.NoError(t, err)
		defer s.Close()
		require.Equal(t, fast.Name, res.Zone, "%+v", res.Zones)
		require.Len(t, res.Zones, 3)
		// By name: the web tier moves zones its health check finds down
		// the list, so the order is not the configured one.
		require.Contains(t, zoneReport(t, res, "badcert").Err, "fingerprint", "the bad-certificate zone's reason")
		sr, fr := zoneReport(t, res, slow.Name), zoneReport(t, res, fast.Name)
		require.Empty(t, sr.Err)
		require.Greater(t, sr.Median, 200*time.Millisecond, "the relay adds 100 ms each way")
		require.Less(t, fr.Score, sr.Score)
		require.True(t, fr.Chosen)
		require.Equal(t, "mmr-"+fast.Name, res.MMR.ID)
		require.NoError(t, s.Leave(context.Background()))
	})

	t.Run("ties go to the web order", func(t *testing.T) {
		require.NoError(t, e.web.SetZones([]connect.LookupZone{fast.LookupZone(), slow.LookupZone()}))
		cfg := clientConfig(t, e, 0, newReceiver())
		cfg.ScoreTie = 50 * time.Millisecond // loopback zones: both well within it
		cfg.MeetingID = meetingID
		s, res, err := connect.Connect(context.Background(), cfg)
		require.NoError(t, err)
		defer s.Close()
		require.Equal(t, fast.Name, res.Zone)
		require.NoError(t, s.Leave(context.Background()))
	})

	t.Run("-zone forces a zone", func(t *testing.T) {
		require.NoError(t, e.web.SetZones([]connect.LookupZone{fast.LookupZone(), slow.LookupZone()}))
		cfg := clientConfig(t, e, 0, newReceiver())
		cfg.Zone = slow.Name
		s, res, err := connect.Connect(context.Background(), cfg)
		// The meeting may still be live on the fast zone's MMR from the
		// subtests above only within its grace; Leave ended it there.
		require.NoError(t, err)
		defer s.Close()
		require.Equal(t, slow.Name, res.Zone)
		require.Contains(t, zoneReport(t, res, fast.Name).Err, "-zone")
		require.NoError(t, s.Leave(context.Background()))
	})
}

func TestScore(t *testing.T) {
	for _, tc := range []struct {
		median, jitter time.Duration
		loss           float64
		want           time.Duration
	}{
		{10 * time.Millisecond, 0, 0, 10 * time.Millisecond},
		{10 * time.Millisecond, 2 * time.Millisecond, 0, 14 * time.Millisecond},
		{10 * time.Millisecond, 0, 0.05, 60 * time.Millisecond},
	} {
		require.Equal(t, tc.want, connect.Score(tc.median, tc.jitter, tc.loss))
	}
}

// A ZC listed with ca_pem is verified against it (and its server name);
// one whose certificate the CA did not sign is skipped with the reason.
func TestZoneCAVerification(t *testing.T) {
	leaktest.Check(t)
	e := startEnv(t, 2)
	good, other := e.zones[0], e.zones[1]
	caOf := func(z *connecttest.Zone) string {
		return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: z.Cert.Certificate[0]}))
	}
	byCA := good.LookupZone()
	byCA.ZCs[0].Fingerprint, byCA.ZCs[0].CAPEM = "", caOf(good)
	wrongCA := other.LookupZone()
	wrongCA.ZCs[0].Fingerprint, wrongCA.ZCs[0].CAPEM = "", caOf(good)
	require.NoError(t, e.web.SetZones([]connect.LookupZone{wrongCA, byCA}))
	s, res, err := connect.Connect(context.Background(), clientConfig(t, e, 0, newReceiver()))
	require.NoError(t, err)
	defer s.Close()
	require.Equal(t, good.Name, res.Zone)
	require.Contains(t, zoneReport(t, res, other.Name).Err, "certificate", "%+v", res.Zones)
	require.NoError(t, s.Leave(context.Background()))
}

func zoneReport(t *testing.T, res connect.Result, name string) connect.ZoneReport {
	t.Helper()
	for _, z := range res.Zones {
		if z.Name == name {
			return z
		}
	}
	t.Fatalf("no report for zone %s in %+v", name, res.Zones)
	return connect.ZoneReport{}
}
