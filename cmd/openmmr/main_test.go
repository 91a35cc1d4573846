package main

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/openmmr/mmr/client/connect"
	"github.com/openmmr/mmr/client/connect/connecttest"
	ctlproto "github.com/openmmr/mmr/control/proto"
	"github.com/openmmr/mmr/internal/leaktest"
	"github.com/openmmr/mmr/internal/onebox"
	"github.com/openmmr/mmr/media"
	"github.com/openmmr/mmr/tlsutil"
)

const meetingID = "1234567890"

var joinSecret = []byte("openmmr-test-join-secret-0123456789")

// childArgs makes the test binary run main's join (the SIGKILL test).
const childArgs = "OPENMMR_TEST_JOIN_ARGS"

func TestMain(m *testing.M) {
	if a := os.Getenv(childArgs); a != "" {
		var args []string
		if err := json.Unmarshal([]byte(a), &args); err != nil {
			os.Exit(3)
		}
		os.Exit(run(context.Background(), args, os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

type env struct {
	zone *connecttest.Zone
	web  *connecttest.Web
}

func startEnv(t *testing.T, ttl time.Duration) *env {
	z, err := connecttest.StartZone(connecttest.ZoneConfig{JoinSecret: joinSecret})
	require.NoError(t, err)
	t.Cleanup(z.Close)
	w, err := connecttest.StartWeb(connecttest.WebConfig{JoinSecret: joinSecret, TokenTTL: ttl,
		Meetings: map[string]string{meetingID: "4242"}, E2EEMeetings: map[string]string{e2eeMeetingID: "4242"},
		Zones: []connect.LookupZone{z.LookupZone()}})
	require.NoError(t, err)
	t.Cleanup(w.Close)
	return &env{zone: z, web: w}
}

func (e *env) args(extra ...string) []string {
	return append([]string{"join", "-web", e.web.URL, "-pin", e.web.Fingerprint, "-passcode", "4242", "-log-level", "error"}, extra...)
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// twoJoins runs alice's and bob's 4 s joins of meeting at once, each
// writing dir/NAME.json, and returns their exit codes and outputs.
func twoJoins(e *env, dir, meeting string, extra ...string) ([]int, []*syncBuf) {
	var wg sync.WaitGroup
	codes := make([]int, 2)
	outs := make([]*syncBuf, 2)
	for i, name := range []string{"alice", "bob"} {
		outs[i] = &syncBuf{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			args := append(append([]string{"-name", name, "-duration", "4s", "-json", filepath.Join(dir, name+".json")}, extra...), meeting)
			codes[i] = run(context.Background(), e.args(args...), outs[i], outs[i])
		}()
	}
	wg.Wait()
	return codes, outs
}

func TestTwoJoinsSeeEachOther(t *testing.T) {
	leaktest.Check(t)
	e := startEnv(t, 0)
	dir := t.TempDir()
	codes, outs := twoJoins(e, dir, meetingID, "-status", "500ms")
	for i, name := range []string{"alice", "bob"} {
		require.Equal(t, 0, codes[i], outs[i].String())
		var s Summary
		b, err := os.ReadFile(filepath.Join(dir, name+".json"))
		require.NoError(t, err)
		require.NoError(t, json.Unmarshal(b, &s))
		require.True(t, s.Joined)
		other := map[string]string{"alice": "bob", "bob": "alice"}[name]
		require.Contains(t, strings.Join(append(s.Roster, s.Left...), ","), other, "%+v", s)
		for _, k := range media.Kinds {
			ks := s.Kinds[k.String()]
			require.Equal(t, connect.UDP, ks.Transport)
			require.Positive(t, ks.PacketsOut, k)
			require.Equal(t, 1, ks.Received.Sources, "%s: %+v", k, ks)
			require.Positive(t, ks.Received.Received, k)
			require.LessOrEqual(t, ks.Received.Loss, 0.05, "%s: %+v", k, ks)
		}
		// Audio at 50 packets/s for at least two seconds of overlap.
		require.Greater(t, s.Kinds["audio"].Received.Received, uint64(50), "%+v", s.Kinds["audio"])
		require.Contains(t, outs[i].String(), "audio   udp  out")
		require.Contains(t, outs[i].String(), "summary: meeting "+meetingID)
	}
	// Synthetic audio talks in 2 s spurts with RFC 6464 levels: the server
	// names an active speaker, which the status lines show.
	require.True(t, strings.Contains(outs[0].String(), "speaking: ") || strings.Contains(outs[1].String(), "speaking: "),
		"no active speaker shown:\n%s\n%s", outs[0], outs[1])
}

// e2eeMeetingID is created end-to-end encrypted by startEnv.
const e2eeMeetingID = "5550002222"

// TestE2EEJoinsShowOneSecurityCode: two joins of an E2EE meeting print
// the security code, the same one for the same key, and the summary says
// e2ee with nothing rejected.
func TestE2EEJoinsShowOneSecurityCode(t *testing.T) {
	leaktest.Check(t)
	e := startEnv(t, 0)
	dir := t.TempDir()
	codes, outs := twoJoins(e, dir, e2eeMeetingID)
	lines := make([]map[string]bool, 2) // "code (key N, 2 members" lines each printed
	re := regexp.MustCompile(`end-to-end encrypted: security code (\d{5}( \d{5}){5}) \(key (\d+), 2 members`)
	for i, name := range []string{"alice", "bob"} {
		require.Equal(t, 0, codes[i], outs[i].String())
		require.Contains(t, outs[i].String(), "media protection e2ee")
		lines[i] = map[string]bool{}
		for _, m := range re.FindAllStringSubmatch(outs[i].String(), -1) {
			lines[i][m[1]+"/"+m[3]] = true
		}
		var s Summary
		b, err := os.ReadFile(filepath.Join(dir, name+".json"))
		require.NoError(t, err)
		require.NoError(t, json.Unmarshal(b, &s))
		require.Equal(t, "e2ee", s.Protection.Mode)
		require.NotEmpty(t, s.Protection.SecurityCode)
		require.Positive(t, s.Protection.Opened)
		require.Zero(t, s.Protection.Auth+s.Protection.Replayed, "%+v", s.Protection)
	}
	common := 0
	for l := range lines[0] {
		if lines[1][l] {
			common++
		}
	}
	require.Positive(t, common, "no code printed by both for the same key: %v %v", lines[0], lines[1])
}

func TestJoinFailuresExitNonZeroWithOneLine(t *testing.T) {
	leaktest.Check(t)
	for _, tc := range []struct {
		name string
		ttl  time.Duration
		args []string
		want string
	}{
		{"wrong passcode", 0, []string{"-passcode", "0000"}, "wrong-passcode"},
		{"expired token", -1, nil, "token-expired"},
		{"unknown meeting", 0, []string{"99999999999"}, "meeting-not-found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := startEnv(t, tc.ttl)
			args := e.args(tc.args...)
			if !strings.HasPrefix(args[len(args)-1], "9") {
				args = append(args, meetingID)
			}
			var out, errb syncBuf
			code := run(context.Background(), args, &out, &errb)
			require.Equal(t, 1, code)
			lines := strings.Split(strings.TrimSpace(errb.String()), "\n")
			require.Contains(t, lines[0], "cannot join")
			require.Contains(t, lines[0], tc.want)
			require.Len(t, lines, 1, "a refusal is one line, without the web client advice: %q", errb.String())
		})
	}
}

func TestUsage(t *testing.T) {
	var out, errb syncBuf
	require.Equal(t, 2, run(context.Background(), nil, &out, &errb))
	require.Equal(t, 0, run(context.Background(), []string{"-h"}, &out, &errb))
	require.Equal(t, 0, run(context.Background(), []string{"join", "-h"}, &out, &errb))
	require.Equal(t, 2, run(context.Background(), []string{"join", "123"}, &out, &errb))
	require.Equal(t, 2, run(context.Background(), []string{"join", "-web", "https://x", "123"}, &out, &errb))
	require.Equal(t, 2, run(context.Background(), []string{"join", "-web", "https://x", "-pin", strings.Repeat("ab", 32), "1", "2"}, &out, &errb), "two IDs")
	o, err := parseJoin([]string{"-web", "https://x", "-pin", strings.Repeat("ab", 32), "123", "-name", "bob", "-duration", "2s"}, &errb)
	require.NoError(t, err, "flags after the meeting ID")
	require.Equal(t, "123", o.cfg.MeetingID)
	require.Equal(t, "bob", o.cfg.Name)
	require.Equal(t, 2*time.Second, o.duration)
}

// A join killed with SIGKILL: the others see it leave with reason timeout
// once the control server's grace period is over, the router drops it, and
// the meeting goes on (a new join exchanges media with the survivor).
func TestSIGKILLedJoinRecovers(t *testing.T) {
	leaktest.Check(t)
	e := startEnv(t, 0)
	events := make(chan ctlproto.Message, 64)
	cfg := func(name string, ssrc uint32) connect.Config {
		tc, err := tlsutil.PinnedClientConfig(e.web.Fingerprint)
		require.NoError(t, err)
		return connect.Config{Web: e.web.URL, WebTLS: tc, MeetingID: meetingID, Passcode: "4242", Name: name, NoEnvProxy: true, Logger: slog.New(slog.DiscardHandler),
			Kinds: []media.Kind{media.Audio}, SSRCs: map[media.Kind][]uint32{media.Audio: {ssrc}}}
	}
	sc := cfg("survivor", 0xabc)
	var rxMu sync.Mutex
	rx := 0
	sc.OnMedia = func(media.Kind, []byte) {
		rxMu.Lock()
		rx++
		rxMu.Unlock()
	}
	sc.OnEvent = func(m any) {
		if msg, ok := m.(ctlproto.Message); ok {
			select {
			case events <- msg:
			default:
			}
		}
	}
	ctx := context.Background()
	surv, _, err := connect.Connect(ctx, sc)
	require.NoError(t, err)
	defer surv.Close()

	exe, err := os.Executable()
	require.NoError(t, err)
	a, _ := json.Marshal(e.args("-name", "victim", "-status", "0", meetingID))
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), childArgs+"="+string(a))
	require.NoError(t, cmd.Start())
	defer func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}()
	var victim uint64
	require.NoError(t, connecttest.Wait(ctx, 60*time.Second, func() bool {
		select {
		case m := <-events:
			if j, ok := m.(*ctlproto.ParticipantJoined); ok && j.Participant.Name == "victim" {
				victim = j.Participant.ID
			}
		default:
		}
		rxMu.Lock()
		defer rxMu.Unlock()
		return victim != 0 && rx > 20
	}), "the victim's media never arrived")
	require.Equal(t, 2, e.zone.Router.Stats().Participants)

	killed := time.Now()
	require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
	_ = cmd.Wait()
	var left *ctlproto.ParticipantLeft
	require.NoError(t, connecttest.Wait(ctx, 60*time.Second, func() bool {
		select {
		case m := <-events:
			if l, ok := m.(*ctlproto.ParticipantLeft); ok && l.Participant == victim {
				left = l
			}
		default:
		}
		return left != nil
	}))
	require.Equal(t, ctlproto.ReasonTimeout, left.Reason)
	t.Logf("the killed join left (reason %s) %v after SIGKILL", left.Reason, time.Since(killed))
	require.GreaterOrEqual(t, time.Since(killed), 9*time.Second, "not before the 10 s grace period")
	require.NoError(t, connecttest.Wait(ctx, 10*time.Second, func() bool { return e.zone.Router.Stats().Participants == 1 }))

	// The meeting goes on: a newcomer receives the survivor's audio.
	nc := cfg("newcomer", 0xdef)
	var got sync.WaitGroup
	got.Add(1)
	var once sync.Once
	nc.OnMedia = func(media.Kind, []byte) { once.Do(got.Done) }
	n, _, err := connect.Connect(ctx, nc)
	require.NoError(t, err)
	defer n.Close()
	pkt := make([]byte, 160)
	pkt[0], pkt[1] = 0x80, 111
	pkt[8], pkt[9], pkt[10], pkt[11] = 0, 0, 0x0a, 0xbc
	done := make(chan struct{})
	go func() {
		got.Wait()
		close(done)
	}()
	require.NoError(t, connecttest.Wait(ctx, 20*time.Second, func() bool {
		pkt[3]++
		_ = surv.Flow(media.Audio).Send(pkt)
		select {
		case <-done:
			return true
		case <-time.After(10 * time.Millisecond):
			return false
		}
	}))
	require.NoError(t, n.Leave(ctx))
	require.NoError(t, surv.Leave(ctx))
}

// -local takes the web tier, pin, passcode and meeting from the one-box
// node's state directory.
func TestJoinLocal(t *testing.T) {
	leaktest.Check(t)
	e := startEnv(t, 0)
	state := t.TempDir()
	var out, errb syncBuf
	require.Equal(t, 2, run(context.Background(), []string{"join", "-local", "-state", state}, &out, &errb))
	require.Contains(t, errb.String(), "no one-box node")
	require.NoError(t, onebox.Write(state, onebox.Join{Web: e.web.URL, Pin: e.web.Fingerprint, Meeting: meetingID, Passcode: "4242"}))
	out, errb = syncBuf{}, syncBuf{}
	code := run(context.Background(), []string{"join", "-local", "-state", state, "-duration", "1s", "-status", "0", "-log-format", "json"}, &out, &errb)
	require.Equal(t, 0, code, errb.String())
	require.Contains(t, out.String(), "joined meeting "+meetingID)
	// -log-format json: every log line is a JSON object, the connection
	// process's phases and per-kind transport lines among them.
	var msgs []string
	for _, l := range strings.Split(strings.TrimSpace(errb.String()), "\n") {
		var m map[string]any
		require.NoError(t, json.Unmarshal([]byte(l), &m), "log line %q", l)
		msgs = append(msgs, m["msg"].(string))
	}
	require.Contains(t, msgs, "connect: joined")
	require.Contains(t, msgs, "connect: media")
}
