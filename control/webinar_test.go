package control

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/openmmr/mmr/control/proto"
	"github.com/openmmr/mmr/control/token"
	"github.com/openmmr/mmr/tlsutil"
)

// TestWebinarViewersListedToOthersOnly: a viewer's roster and events name
// the hosts and participants, never the other viewers; hosts and
// participants see everyone. Viewers count against MaxViewers, not
// MaxParticipants.
func TestWebinarViewersListedToOthersOnly(t *testing.T) {
	noLeaks(t)
	e := startServer(t, newFakeRouter(), func(c *Config) { c.MaxParticipants = 2; c.MaxViewers = 3 })
	host := e.join(t, "w", "host", token.Host)
	v1 := e.join(t, "w", "v1", token.Viewer)
	v2 := e.join(t, "w", "v2", token.Viewer)
	require.Len(t, v2.j.Roster, 1, "a viewer's roster: the host, not v1")
	require.Equal(t, host.id(), v2.j.Roster[0].ID)
	host.ev.waitFor(t, "v2 announced to the host", func(m proto.Message) bool {
		pj, ok := m.(*proto.ParticipantJoined)
		return ok && pj.Participant.ID == v2.id()
	})
	panel := e.join(t, "w", "panel", token.Participant)
	require.Len(t, panel.j.Roster, 3, "a participant's roster lists the viewers too")
	v1.ev.waitFor(t, "the panelist announced to v1", func(m proto.Message) bool {
		pj, ok := m.(*proto.ParticipantJoined)
		return ok && pj.Participant.ID == panel.id()
	})
	v3 := e.join(t, "w", "v3", token.Viewer) // the 4th and 5th members, over MaxParticipants: viewers do not count
	require.NoError(t, v3.c.Leave(ctxT(t)))
	host.ev.waitFor(t, "v3 left, told to the host", func(m proto.Message) bool {
		pl, ok := m.(*proto.ParticipantLeft)
		return ok && pl.Participant == v3.id()
	})
	for _, v := range []*member{v1, v2} {
		for _, m := range v.ev.all() {
			switch ev := m.(type) {
			case *proto.ParticipantJoined:
				require.NotContains(t, []uint64{v1.id(), v2.id(), v3.id()}, ev.Participant.ID, "viewers are not announced to viewers")
			case *proto.ParticipantLeft:
				require.NotEqual(t, v3.id(), ev.Participant, "nor their leaving")
			}
		}
	}
}

// BenchmarkWebinarControl joins 10,000 viewers to a webinar with two
// panelists through the control channel (TLS, hello, join) against the
// real router, 4 at a time from a child process (the client ends of the
// connections would not fit this process's descriptor limit), while a
// participant of another meeting pings every 10 ms; then the host ends the
// webinar. It reports the time to fill the webinar, the p99 of the join
// request (join → joined, the TLS handshake excluded), the other meeting's
// ping p99 throughout, and the time end-meeting takes.
func BenchmarkWebinarControl(b *testing.B) {
	const n = 10_000
	for range b.N {
		b.StopTimer()
		_, e := startE2E(b, func(c *Config) { c.MaxConns = n + 100; c.MaxConnsPerIP = n + 100; c.SendQueue = 4 * n })
		host := e.join(b, "w", "host", token.Host)
		e.join(b, "w", "panel", token.Participant)
		other := e.join(b, "other", "o", token.Participant)
		stop := make(chan struct{})
		pings := make(chan []time.Duration, 1)
		go func() {
			var rtts []time.Duration
			defer func() { pings <- rtts }()
			for {
				select {
				case <-stop:
					return
				case <-time.After(10 * time.Millisecond):
				}
				t0 := time.Now()
				if _, _, err := other.c.Ping(context.Background()); err != nil {
					return
				}
				rtts = append(rtts, time.Since(t0))
			}
		}()
		cmd := exec.Command(os.Args[0], "-test.run=^TestWebinarClientFarm$")
		cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s,%s,%d", farmEnv, e.addr(), e.fp, n))
		stdin, err := cmd.StdinPipe()
		require.NoError(b, err)
		out, err := cmd.StdoutPipe()
		require.NoError(b, err)
		cmd.Stderr = os.Stderr
		b.StartTimer()
		start := time.Now()
		require.NoError(b, cmd.Start())
		var joinP99 float64
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if _, err := fmt.Sscanf(sc.Text(), "FARM joined p99-ms %f", &joinP99); err == nil {
				break
			}
		}
		fill := time.Since(start)
		b.StopTimer()
		t0 := time.Now()
		require.NoError(b, host.c.EndMeeting(context.Background()))
		end := time.Since(t0)
		close(stop)
		rtts := <-pings
		stdin.Close()
		require.NoError(b, cmd.Wait())
		require.NotZero(b, joinP99, "the farm joined everyone")
		slices.Sort(rtts)
		b.ReportMetric(fill.Seconds(), "fill-s")
		b.ReportMetric(joinP99, "join-p99-ms")
		b.ReportMetric(float64(rtts[len(rtts)*99/100].Microseconds())/1000, "other-ping-p99-ms")
		b.ReportMetric(float64(end.Microseconds())/1000, "end-ms")
	}
}

const farmEnv = "MMR_WEBINAR_FARM"

// farmWorkers join concurrently: enough to keep both cores busy with TLS
// handshakes, few enough that each join is measured, not queued.
const farmWorkers = 4

// TestWebinarClientFarm is BenchmarkWebinarControl's child: it joins the
// viewers, prints the join p99, holds the connections until stdin closes.
func TestWebinarClientFarm(t *testing.T) {
	spec := os.Getenv(farmEnv)
	if spec == "" {
		t.Skip("child process of BenchmarkWebinarControl")
	}
	parts := strings.Split(spec, ",")
	require.Len(t, parts, 3)
	addr, fp := parts[0], parts[1]
	n, err := strconv.Atoi(parts[2])
	require.NoError(t, err)
	cli, err := tlsutil.PinnedClientConfig(fp)
	require.NoError(t, err)
	tokens := make([]string, n)
	for i := range tokens {
		tokens[i] = mint(t, "w", fmt.Sprint("v", i), token.Viewer)
	}
	var (
		mu    sync.Mutex
		lat   []time.Duration
		conns []*tls.Conn
		next  atomic.Int64
		fail  atomic.Value
		wg    sync.WaitGroup
	)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range farmWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n || fail.Load() != nil {
					return
				}
				src := netip.AddrFrom4([4]byte{127, 0, byte(1 + i/250), byte(1 + i%250)})
				d := &tls.Dialer{Config: cli, NetDialer: &net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(src, 0))}}
				nc, err := d.DialContext(context.Background(), "tcp", addr)
				if err != nil {
					fail.Store(err)
					return
				}
				tc := nc.(*tls.Conn)
				mu.Lock()
				conns = append(conns, tc)
				mu.Unlock()
				_ = tc.SetDeadline(time.Now().Add(time.Minute))
				fr := proto.NewFrameReader(tc, proto.ClientMaxFrame)
				if err := farmSend(tc, 1, &proto.Hello{Versions: []int{proto.Version}}); err != nil {
					fail.Store(err)
					return
				}
				if _, err := farmNext(fr); err != nil {
					fail.Store(err)
					return
				}
				t0 := time.Now()
				if err := farmSend(tc, 2, &proto.Join{Meeting: "w", Token: tokens[i]}); err != nil {
					fail.Store(err)
					return
				}
				m, err := farmNext(fr)
				took := time.Since(t0)
				if _, ok := m.(*proto.Joined); !ok || err != nil {
					fail.Store(fmt.Errorf("join %d: %#v %v", i, m, err))
					return
				}
				mu.Lock()
				lat = append(lat, took)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if err, _ := fail.Load().(error); err != nil {
		t.Fatal(err)
	}
	slices.Sort(lat)
	fmt.Printf("FARM joined p99-ms %.3f\n", float64(lat[len(lat)*99/100].Microseconds())/1000)
	_, _ = io.Copy(io.Discard, os.Stdin) // hold the connections until the parent is done
}

func farmSend(tc *tls.Conn, id uint32, m proto.Message) error {
	b, err := proto.Encode(id, m)
	if err != nil {
		return err
	}
	_, err = tc.Write(b)
	return err
}

// farmNext reads the next message that is not a ping.
func farmNext(fr *proto.FrameReader) (proto.Message, error) {
	for {
		p, err := fr.Next()
		if err != nil {
			return nil, err
		}
		_, m, err := proto.Decode(p)
		if err != nil {
			return nil, err
		}
		if _, ping := m.(*proto.Ping); !ping {
			return m, nil
		}
	}
}
