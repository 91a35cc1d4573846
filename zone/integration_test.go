package zone_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"github.com/openmmr/mmr/internal/leaktest"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/openmmr/mmr/control/zcagent"
	"github.com/openmmr/mmr/tlsutil"
	"github.com/openmmr/mmr/zone"
	"github.com/openmmr/mmr/zone/proto"
	"github.com/openmmr/mmr/zone/zclient"
)

// The integration test runs each MMR as a child process (this test binary
// re-executed in helper mode) so that "killing an MMR" is a real SIGKILL.

const helperEnv = "ZONE_TEST_MMR_HELPER"

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) == "1" {
		os.Exit(runHelperMMR())
	}
	os.Exit(m.Run())
}

// runHelperMMR is a fake MMR: a real agent fed by a load the parent controls
// over stdin ("host ID", "end ID", "drain"). After "drain" it exits 0 when
// its last meeting ends (3 at the deadline), like cmd/mmr.
func runHelperMMR() int {
	local := netip.MustParseAddr(os.Getenv("ZT_LOCAL"))
	cpu, _ := strconv.ParseFloat(os.Getenv("ZT_CPU"), 64)
	pin, err := tlsutil.PinnedClientConfig(os.Getenv("ZT_FP"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	src := &helperLoad{hosted: map[string]bool{}}
	a, err := zcagent.New(zcagent.Config{
		ID: os.Getenv("ZT_ID"), ZCs: strings.Split(os.Getenv("ZT_ZCS"), ","), Secret: []byte(os.Getenv("ZT_SECRET")),
		TLS: pin, LocalAddr: local,
		Endpoints: proto.Endpoints{
			UDP: []netip.AddrPort{netip.AddrPortFrom(local, 8801)},
			TCP: []netip.AddrPort{netip.AddrPortFrom(local, 8801)},
			TLS: []netip.AddrPort{netip.AddrPortFrom(local, 443)},
		},
		Capacity: proto.Capacity{Meetings: 20, Participants: 500},
		CPU:      func() float64 { return cpu },
		Logger:   slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	}, src)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	defer a.Close()
	drained := make(chan error, 1)
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(os.Stdin)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	for {
		select {
		case err := <-drained:
			a.Close()
			if err != nil {
				return 3
			}
			return 0
		case line, ok := <-lines:
			if !ok {
				return 0
			}
			cmd, arg, _ := strings.Cut(line, " ")
			switch cmd {
			case "host":
				src.set(arg, true)
			case "end":
				src.set(arg, false)
			case "drain":
				a.Drain()
				go func() { drained <- zcagent.WaitDrained(context.Background(), src, time.Now().Add(30*time.Second)) }()
			}
			a.Update()
		}
	}
}

type helperLoad struct {
	mu     sync.Mutex
	hosted map[string]bool
}

func (l *helperLoad) set(id string, on bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if on {
		l.hosted[id] = true
	} else {
		delete(l.hosted, id)
	}
}

func (l *helperLoad) Load() zcagent.Load {
	l.mu.Lock()
	defer l.mu.Unlock()
	ld := zcagent.Load{Meetings: len(l.hosted), Participants: 2 * len(l.hosted), Hosted: []zcagent.Meeting{}}
	for id := range l.hosted {
		ld.Hosted = append(ld.Hosted, zcagent.Meeting{ID: id, Participants: 2})
	}
	return ld
}

// mmrProc is a helper MMR process.
type mmrProc struct {
	id     string
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	exited chan struct{}
	stderr *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func startMMR(t *testing.T, id string, local netip.Addr, zcs []string, fp string, cpu float64) *mmrProc {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"=1", "ZT_ID="+id, "ZT_LOCAL="+local.String(),
		"ZT_ZCS="+strings.Join(zcs, ","), "ZT_SECRET="+string(itSecret), "ZT_FP="+fp,
		"ZT_CPU="+strconv.FormatFloat(cpu, 'f', -1, 64))
	stdin, err := cmd.StdinPipe()
	require.NoError(t, err)
	p := &mmrProc{id: id, cmd: cmd, stdin: stdin, exited: make(chan struct{}), stderr: &syncBuffer{}}
	cmd.Stderr = p.stderr
	require.NoError(t, cmd.Start())
	go func() { cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.exited
		if t.Failed() && p.stderr.String() != "" {
			t.Logf("%s stderr:\n%s", id, p.stderr.String())
		}
	})
	return p
}

func (p *mmrProc) do(t *testing.T, format string, args ...any) {
	t.Helper()
	_, err := fmt.Fprintf(p.stdin, format+"\n", args...)
	require.NoError(t, err)
}

var itSecret = []byte("integration-zone-secret-00000000")

func statusOf(s *zone.Server, id string) (zone.MMRStatus, bool) {
	for _, m := range s.MMRs() {
		if m.ID == id {
			return m, true
		}
	}
	return zone.MMRStatus{}, false
}

func hosts(s *zone.Server, mmr, meeting string) bool {
	m, ok := statusOf(s, mmr)
	if !ok {
		return false
	}
	for _, h := range m.Hosted {
		if h == meeting {
			return true
		}
	}
	return false
}

// TestZoneEndToEnd: 2 ZCs and 3 MMRs on distinct loopback addresses over
// real TLS, with the real defaults (1 s reports, out after 3 missed).
func TestZoneEndToEnd(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("needs the whole 127.0.0.0/8 on loopback (Linux)")
	}
	if testing.Short() {
		t.Skip("about 15 s")
	}
	leakCheck(t)
	cert, err := tlsutil.SelfSigned() // an HA pair sharing one certificate: MMRs pin it
	require.NoError(t, err)
	fp := tlsutil.Fingerprint(cert)
	zcAddr := []netip.AddrPort{netip.MustParseAddrPort("127.0.0.11:0"), netip.MustParseAddrPort("127.0.0.12:0")}
	zcs := make([]*zone.Server, 2)
	startZC := func(i int) *zone.Server {
		s, err := zone.New(zone.Config{
			ID: fmt.Sprintf("zc-%d", i+1), Listen: zcAddr[i], Certificate: cert, Secrets: [][]byte{itSecret},
			LookupRate: 1000, Logger: slog.New(slog.DiscardHandler),
		})
		require.NoError(t, err)
		zcAddr[i] = s.Addr()
		return s
	}
	for i := range zcs {
		zcs[i] = startZC(i)
	}
	defer func() {
		for _, s := range zcs {
			s.Close()
		}
	}()
	pin, err := tlsutil.PinnedClientConfig(fp)
	require.NoError(t, err)
	clients := make([]*zclient.Client, 2)
	dialClients := func() {
		for i := range clients {
			if clients[i] != nil {
				clients[i].Close()
			}
			clients[i], err = zclient.Dial(context.Background(), zcAddr[i].String(), pin)
			require.NoError(t, err)
		}
	}
	dialClients()
	defer func() {
		for _, c := range clients {
			c.Close()
		}
	}()
	// lookupBoth asks both ZCs over the network and requires the same answer.
	lookupBoth := func(meeting string) proto.Placement {
		t.Helper()
		p1, err := clients[0].Lookup(context.Background(), meeting)
		require.NoError(t, err)
		p2, err := clients[1].Lookup(context.Background(), meeting)
		require.NoError(t, err)
		require.Equal(t, p1.MMR, p2.MMR, "the HA pair disagrees on %s", meeting)
		return p1
	}

	zcList := []string{zcAddr[0].String(), zcAddr[1].String()}
	ids := []string{"mmr-a", "mmr-b", "mmr-c"}
	// mmr-a runs hot (CPU 0.6 of its 0.85 cap: load 0.71); b and c are idle.
	cpu := map[string]float64{"mmr-a": 0.6, "mmr-b": 0.05, "mmr-c": 0.05}
	procs := map[string]*mmrProc{}
	for i, id := range ids {
		procs[id] = startMMR(t, id, netip.AddrFrom4([4]byte{127, 0, 0, byte(21 + i)}), zcList, fp, cpu[id])
	}
	allRegistered := func(s *zone.Server) bool {
		n := 0
		for _, m := range s.MMRs() {
			if m.Selectable {
				n++
			}
		}
		return n == len(ids)
	}
	for _, s := range zcs {
		require.Eventually(t, func() bool { return allRegistered(s) }, 10*time.Second, 10*time.Millisecond)
	}
	m, _ := statusOf(zcs[0], "mmr-b")
	require.Equal(t, "127.0.0.22:8801", m.Endpoints.UDP[0].String())

	// --- 30 meetings spread by load; both ZCs agree on every placement.
	placed := map[string]string{}
	count := map[string]int{}
	for i := range 30 {
		meeting := fmt.Sprintf("meeting-%02d", i)
		p := lookupBoth(meeting)
		require.False(t, p.Existing)
		placed[meeting] = p.MMR
		count[p.MMR]++
		// The first participant joins: the MMR hosts the meeting and both
		// ZCs learn it from its next report (sent at once by Update).
		procs[p.MMR].do(t, "host %s", meeting)
		for _, s := range zcs {
			require.Eventually(t, func() bool { return hosts(s, p.MMR, meeting) }, 5*time.Second, 2*time.Millisecond)
		}
	}
	t.Logf("spread: %v", count)
	require.Less(t, count["mmr-a"], count["mmr-b"], "the loaded MMR gets fewer meetings")
	require.Less(t, count["mmr-a"], count["mmr-c"], "the loaded MMR gets fewer meetings")
	require.GreaterOrEqual(t, min(count["mmr-b"], count["mmr-c"]), 8, "idle MMRs share the meetings")
	for meeting, mmr := range placed {
		p := lookupBoth(meeting)
		require.Equal(t, mmr, p.MMR)
		require.True(t, p.Existing)
	}

	// --- Restarting a ZC brings every MMR back within 5 s, meetings included.
	zcs[0].Close()
	restarted := time.Now()
	zcs[0] = startZC(0)
	require.Eventually(t, func() bool { return allRegistered(zcs[0]) }, 5*time.Second, 10*time.Millisecond,
		"every MMR is back on the restarted ZC within 5 s")
	t.Logf("MMRs back on the restarted ZC after %v", time.Since(restarted).Round(time.Millisecond))
	dialClients()
	for meeting, mmr := range placed {
		require.Equal(t, mmr, lookupBoth(meeting).MMR, "meetings stay put across a ZC restart")
	}

	// --- Killing an MMR takes it out of selection within 3 s; its meetings
	// move on the next request, and both ZCs agree where.
	victim := "mmr-b"
	var victimMeeting string
	for meeting, mmr := range placed {
		if mmr == victim {
			victimMeeting = meeting
			break
		}
	}
	require.NotEmpty(t, victimMeeting)
	require.NoError(t, procs[victim].cmd.Process.Signal(syscall.SIGKILL))
	killed := time.Now()
	for _, s := range zcs {
		require.Eventually(t, func() bool { _, ok := statusOf(s, victim); return !ok }, 3*time.Second, 5*time.Millisecond,
			"a killed MMR is out of selection within 3 s")
	}
	t.Logf("killed MMR out of selection after %v", time.Since(killed).Round(time.Millisecond))
	for meeting, mmr := range placed {
		p := lookupBoth(meeting)
		if mmr != victim {
			require.Equal(t, mmr, p.MMR, "other meetings stay")
			continue
		}
		require.NotEqual(t, victim, p.MMR)
		require.False(t, p.Existing, "placed again")
		placed[meeting] = p.MMR
		procs[p.MMR].do(t, "host %s", meeting)
		for _, s := range zcs {
			require.Eventually(t, func() bool { return hosts(s, p.MMR, meeting) }, 5*time.Second, 2*time.Millisecond)
		}
	}

	// --- A drained MMR gets no new meetings and exits when empty.
	drained := "mmr-c"
	procs[drained].do(t, "drain")
	for _, s := range zcs {
		require.Eventually(t, func() bool { m, _ := statusOf(s, drained); return m.Report.Draining }, 5*time.Second, 5*time.Millisecond)
	}
	for i := range 10 {
		p := lookupBoth(fmt.Sprintf("after-drain-%d", i))
		require.Equal(t, "mmr-a", p.MMR, "the only MMR neither dead nor draining")
	}
	for meeting, mmr := range placed {
		if mmr == drained {
			require.Equal(t, drained, lookupBoth(meeting).MMR, "existing meetings stay on the draining MMR")
		}
	}
	select {
	case <-procs[drained].exited:
		t.Fatal("the draining MMR exited with meetings left")
	default:
	}
	for meeting, mmr := range placed {
		if mmr == drained {
			procs[drained].do(t, "end %s", meeting)
		}
	}
	select {
	case <-procs[drained].exited:
	case <-time.After(5 * time.Second):
		t.Fatal("the drained MMR did not exit after its last meeting ended")
	}
	require.Zero(t, procs[drained].cmd.ProcessState.ExitCode())
	for _, s := range zcs {
		require.Eventually(t, func() bool { _, ok := statusOf(s, drained); return !ok }, 2*time.Second, 5*time.Millisecond,
			"a drained MMR says bye on exit")
	}

	// --- A hung MMR (stopped: its socket stays open, no FIN, no reports)
	// misses three reports and is out of selection within 3 s.
	require.NoError(t, procs["mmr-a"].cmd.Process.Signal(syscall.SIGSTOP))
	hung := time.Now()
	// Expiry is exactly 3 s after the last report, which precedes the stop;
	// 100 ms more covers this test's own scheduling, not the ZC's.
	for _, s := range zcs {
		require.Eventually(t, func() bool { _, ok := statusOf(s, "mmr-a"); return !ok }, 3*time.Second+100*time.Millisecond, 5*time.Millisecond,
			"a hung MMR is out of selection within 3 s")
	}
	require.LessOrEqual(t, time.Since(hung), 3*time.Second+100*time.Millisecond)
	t.Logf("hung MMR out of selection after %v", time.Since(hung).Round(time.Millisecond))
	_, err = clients[0].Lookup(context.Background(), "no-mmr-left")
	require.ErrorIs(t, err, &proto.Error{Code: proto.ErrCodeNoCapacity})
}

func leakCheck(t *testing.T) { leaktest.Check(t) }
