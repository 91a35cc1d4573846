package load_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/openmmr/mmr/internal/leaktest"
	"github.com/openmmr/mmr/load"
	"github.com/openmmr/mmr/media"
	"github.com/openmmr/mmr/router"
)

func meetingIDs(n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("%010d", 5550000000+i)
	}
	return ids
}

// routerCheck, run in Config.Drained (after the drain, before anyone
// leaves), compares every participant's received counts with the router's
// own per-participant counters: copies the router handed to the kernel for
// that participant = RTP packets the load tool read + what the kernel
// dropped at the load tool's receive queue (SO_RXQ_OVFL).
type routerCheck struct {
	r          *router.Router
	start      time.Time
	metricsURL string
	metrics    map[string]float64
	metricsErr error
	json       []byte
	checked    int
	mismatches []string
	routerOut  uint64
	loadRx     uint64
}

func (c *routerCheck) drained(rep *load.Report) {
	c.json, _ = json.Marshal(rep)
	if c.metricsURL != "" {
		c.metrics, c.metricsErr = load.Scrape(c.metricsURL)
	}
	for _, p := range rep.People {
		if !p.Joined {
			continue
		}
		st, err := c.r.ParticipantStats(router.ParticipantID(p.ID))
		if err != nil {
			c.mismatches = append(c.mismatches, fmt.Sprintf("participant %d (id %d): %v", p.Index, p.ID, err))
			continue
		}
		var rx, drops, streams uint64
		for _, k := range p.Kinds {
			rx += k.Received + k.Rejected // delivered, whether or not it opened
			drops += k.KernelDrops
			if k.Transport != "udp" {
				streams++
			}
		}
		c.routerOut += st.PacketsOut
		c.loadRx += rx
		c.checked++
		// On a TCP/TLS stream the router also counts, per participant, the
		// BindAck frame and one KeepaliveAck per 5 s keepalive of the
		// connection process; the client consumes those itself.
		if streams > 0 {
			extra := st.PacketsOut - rx - drops
			if st.PacketsOut < rx+drops || extra < streams || extra > streams*(1+uint64(time.Since(c.start)/(5*time.Second))) {
				c.mismatches = append(c.mismatches, fmt.Sprintf("participant %d (id %d): router sent %d, load read %d + %d kernel drops, %d stream kinds", p.Index, p.ID, st.PacketsOut, rx, drops, streams))
			}
			continue
		}
		if rx+drops != st.PacketsOut {
			c.mismatches = append(c.mismatches, fmt.Sprintf("participant %d (id %d): router sent %d, load read %d + %d kernel drops", p.Index, p.ID, st.PacketsOut, rx, drops))
		}
	}
}

// decode parses the report's JSON as a consumer would, without the Go types.
func decode(t testing.TB, b []byte) map[string]any {
	var m map[string]any
	require.NoError(t, json.Unmarshal(b, &m))
	return m
}

func num(t testing.TB, m map[string]any, path ...string) float64 {
	t.Helper()
	var v any = m
	for _, p := range path {
		mm, ok := v.(map[string]any)
		require.True(t, ok, "path %v at %s", path, p)
		v = mm[p]
	}
	f, ok := v.(float64)
	require.True(t, ok, "path %v: %v is not a number", path, v)
	return f
}

func kindOf(t testing.TB, m map[string]any, kind string) map[string]any {
	for _, k := range m["kinds"].([]any) {
		if km := k.(map[string]any); km["kind"] == kind {
			return km
		}
	}
	t.Fatalf("no kind %s in report", kind)
	return nil
}

// conference runs meetings × 5 participants, all publishing audio and 2
// video, through the whole connection process.
func conference(t testing.TB, meetings int, window time.Duration) {
	leaktest.Check(t)
	ids := meetingIDs(meetings)
	b := startBox(t, ids)
	chk := &routerCheck{r: b.r, metricsURL: b.metricsURL}
	var pub [media.NumKinds]int
	pub[media.Audio.Index()], pub[media.Video.Index()] = 5, 2
	rep, err := load.Run(context.Background(), load.Config{
		Meetings: meetings, Participants: 5, MeetingIDs: ids, Publishers: pub,
		Connect: b.connectConfig(t), JoinRate: 200, JoinConcurrency: 32, Duration: window,
		MetricsURL: b.metricsURL, Drained: chk.drained, Logger: testLogger(),
		// The connection process's zone test, shortened: one box, one zone.
		Warmup: 500 * time.Millisecond, HoldMedia: true, Drain: 30 * time.Second, DrainQuiet: 2 * time.Second,
	})
	require.NoError(t, err)
	var table bytes.Buffer
	rep.WriteTable(&table)
	t.Log("\n" + table.String())
	// LOAD_PLOT=FILE.png and LOAD_JSON=FILE keep this run's plot and report
	// (bench/load-conference.* were made so).
	if f := os.Getenv("LOAD_PLOT"); f != "" {
		require.NoError(t, rep.WritePlot(f))
	}
	if f := os.Getenv("LOAD_JSON"); f != "" {
		require.NoError(t, os.WriteFile(f, append(chk.json, '\n'), 0o644))
	}

	m := decode(t, chk.json)
	joins := m["joins"].(map[string]any)
	require.EqualValues(t, meetings*5, num(t, joins, "joined"), "errors: %v", joins["errors"])
	require.Zero(t, num(t, joins, "failed"))
	for _, ph := range []string{"lookup", "zone", "mmr", "control", "media", "handover", "total"} {
		require.Positive(t, num(t, joins, "phases", ph, "p50_ms"), "phase %s", ph)
	}
	for kind, pubs := range map[string]int{"audio": 5, "video": 2} {
		k := kindOf(t, m, kind)
		require.EqualValues(t, meetings*pubs, k["publishers"])
		// Each publisher's packets go to the 4 others of its meeting.
		require.Positive(t, k["expected"].(float64), kind)
		require.LessOrEqual(t, k["received"].(float64), k["expected"].(float64), kind)
		require.Positive(t, num(t, k, "delay", "p50_ms"), kind)
		require.Zero(t, k["duplicates"], kind)
	}
	require.Equal(t, meetings*5, chk.checked)
	require.Empty(t, chk.mismatches)
	// The router's own totals from its /metrics: every copy it sent in the
	// window and drain went to the load tool's participants (they are the
	// only clients); the load tool read each of them or the kernel dropped
	// it at its socket.
	rr := m["router"].(map[string]any)
	require.Empty(t, rr["error"])
	require.Positive(t, num(t, rr, "packets_out"))
	require.Positive(t, num(t, rr, "cpu_seconds"))
	require.Equal(t, chk.routerOut, chk.loadRx+uint64(num(t, m, "load_tool", "kernel_receive_drops")))
	require.NotEmpty(t, m["series"])

	// metrics/prom while everyone was in: the per-meeting gauges and the
	// control channel's join latency histogram (control.Config.Observe).
	require.NoError(t, chk.metricsErr)
	perMeeting := 0
	for k, v := range chk.metrics {
		if strings.HasPrefix(k, "mmr_meeting_participants{") {
			perMeeting++
			require.EqualValues(t, 5, v, k)
		}
	}
	require.Equal(t, meetings, perMeeting)
	require.EqualValues(t, meetings*5, chk.metrics["mmr_control_join_seconds_count"])
	require.EqualValues(t, meetings*5, chk.metrics["mmr_participants"])
}

// TestConference: the bar's 100 meetings × 5 participants (all publishing
// audio, 2 video), through the connection process, with a 5 s window;
// BenchmarkConference30s runs the bar's 30 s. Under the race detector
// (about ten times slower, router and control server included, as they run
// in this process) it runs 20 meetings: CI runs the bar's size in its
// non-race step.
func TestConference(t *testing.T) {
	meetings := 100
	if raceOn {
		meetings = 20
	}
	conference(t, meetings, 5*time.Second)
}

// BenchmarkConference30s is the bar's run at full length:
//
//	go test ./load -run '^$' -bench Conference30s -benchtime 1x -v
func BenchmarkConference30s(b *testing.B) {
	for range b.N {
		conference(b, 100, 30*time.Second)
	}
}

// TestWebinar: 1 publisher (audio, video) and 1,000 viewers in one meeting,
// straight to the MMR; every viewer's count matches the router's. Under
// the race detector it runs 200 viewers (each join sends a roster event to
// everyone already in: 1,000 viewers cost half a million control messages,
// minutes with the race detector on a busy 2-core machine); CI runs the
// bar's 1,000 in its non-race step.
func TestWebinar(t *testing.T) {
	leaktest.Check(t)
	viewers := 1000
	if raceOn {
		viewers = 200
	}
	ids := meetingIDs(1)
	b := startBox(t, ids)
	chk := &routerCheck{r: b.r}
	var pub [media.NumKinds]int
	pub[media.Audio.Index()], pub[media.Video.Index()] = 1, 1
	rep, err := load.Run(context.Background(), load.Config{
		Meetings: 1, Participants: viewers + 1, MeetingIDs: ids, Shape: load.Webinar, Publishers: pub,
		Direct: &load.DirectConfig{Control: b.tlsAddr.String(), TLS: b.mmrTLS(t), JoinSecret: joinSecret},
		// Control connections and media sockets spread over 8 loopback addresses.
		SourceIPs: []netip.Addr{netip.MustParseAddr("127.0.1.1"), netip.MustParseAddr("127.0.1.2"), netip.MustParseAddr("127.0.1.3"),
			netip.MustParseAddr("127.0.1.4"), netip.MustParseAddr("127.0.1.5"), netip.MustParseAddr("127.0.1.6"),
			netip.MustParseAddr("127.0.1.7"), netip.MustParseAddr("127.0.1.8")},
		JoinRate: 500, Duration: 2 * time.Second, Warmup: 500 * time.Millisecond, HoldMedia: true, Drain: 30 * time.Second, DrainQuiet: 2 * time.Second,
		MetricsURL: b.metricsURL, Drained: chk.drained, Logger: testLogger(),
	})
	require.NoError(t, err)
	var table bytes.Buffer
	rep.WriteTable(&table)
	t.Log("\n" + table.String())
	m := decode(t, chk.json)
	require.EqualValues(t, viewers+1, num(t, m, "joins", "joined"), "errors: %v", m["joins"].(map[string]any)["errors"])
	require.Equal(t, viewers+1, chk.checked)
	require.Empty(t, chk.mismatches)
	nviewers := 0
	for _, p := range m["participant_details"].([]any) {
		pm := p.(map[string]any)
		if pm["role"] == "viewer" {
			nviewers++
			require.Positive(t, num(t, pm, "kinds", "audio", "received_all"))
		}
	}
	require.Equal(t, viewers, nviewers)
	a := kindOf(t, m, "audio")
	require.EqualValues(t, 1, a["publishers"])
	require.Positive(t, a["expected"].(float64))
}

// TestTransports: forced TCP and TLS media stay on the connection
// process's streams (no engine socket); counts still match the router's.
func TestTransports(t *testing.T) {
	leaktest.Check(t)
	ids := meetingIDs(2)
	b := startBox(t, ids)
	for _, tr := range []string{"tcp", "tls"} {
		t.Run(tr, func(t *testing.T) {
			chk := &routerCheck{r: b.r, start: time.Now()}
			var pub [media.NumKinds]int
			pub[media.Audio.Index()], pub[media.Video.Index()] = 3, 1
			_, err := load.Run(context.Background(), load.Config{
				Meetings: 2, Participants: 3, MeetingIDs: ids, Publishers: pub, Transport: tr,
				Connect: b.connectConfig(t), Duration: time.Second, Warmup: 200 * time.Millisecond, Drain: 10 * time.Second, DrainQuiet: 2 * time.Second,
				Drained: chk.drained, Logger: testLogger(),
			})
			require.NoError(t, err)
			m := decode(t, chk.json)
			require.EqualValues(t, 6, num(t, m, "joins", "joined"), "errors: %v", m["joins"].(map[string]any)["errors"])
			tr2 := m["joins"].(map[string]any)["transports"].(map[string]any)
			require.EqualValues(t, 6, num(t, tr2, "audio", tr))
			require.EqualValues(t, 6, num(t, tr2, "video", tr))
			_, handover := m["joins"].(map[string]any)["phases"].(map[string]any)["handover"]
			require.True(t, handover)
			a := kindOf(t, m, "audio")
			require.Positive(t, a["received"].(float64))
			require.Equal(t, 6, chk.checked)
			require.Empty(t, chk.mismatches)
		})
	}
}
