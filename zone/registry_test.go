package zone

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/openmmr/mmr/zone/proto"
)

var t0 = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

func testRegistry() *registry {
	c, err := Config{ID: "zc", Certificate: testCert, Secrets: [][]byte{testSecret}, DisableListen: true}.withDefaults()
	if err != nil {
		panic(err)
	}
	return newRegistry(c)
}

func testRegister(i int) proto.Register {
	return proto.Register{
		Endpoints: proto.Endpoints{UDP: []netip.AddrPort{netip.AddrPortFrom(netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}), 8801)}},
		Capacity:  proto.Capacity{Meetings: 100, Participants: 1000, CPU: 0.8},
	}
}

// join registers id with capacity index i and applies rep, returning the session.
func join(t testing.TB, r *registry, id string, rep proto.Report, now time.Time) uint64 {
	t.Helper()
	sess, _, err := r.register(id, testRegister(len(r.mmrs)+1), now)
	require.NoError(t, err)
	require.NoError(t, r.report(id, sess, rep, now))
	return sess
}

func hosted(ids ...string) *[]proto.Hosted {
	h := make([]proto.Hosted, len(ids))
	for i, id := range ids {
		h[i] = proto.Hosted{ID: id, Participants: 1}
	}
	return &h
}

func TestLoadScore(t *testing.T) {
	c := proto.Capacity{Participants: 1000, Meetings: 100, BitsIn: 1e9, BitsOut: 2e9, CPU: 0.8}
	cases := []struct {
		name string
		cap  proto.Capacity
		rep  proto.Report
		want float64
	}{
		{"idle", c, proto.Report{}, 0},
		{"participants", c, proto.Report{Participants: 500}, 0.5},
		{"meetings dominate", c, proto.Report{Participants: 100, Meetings: 90}, 0.9},
		{"bits out", c, proto.Report{BitsOut: 1.5e9}, 0.75},
		{"cpu", c, proto.Report{CPU: 0.4, Meetings: 10}, 0.5},
		{"full", c, proto.Report{Meetings: 100}, 1},
		{"no limits", proto.Capacity{}, proto.Report{Participants: 1e6, CPU: 1}, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			require.InDelta(t, tc.want, loadScore(tc.cap, &tc.rep), 1e-9)
		})
	}
}

func TestEligibility(t *testing.T) {
	cases := []struct {
		name string
		rep  proto.Report
		want bool
	}{
		{"idle", proto.Report{}, true},
		{"busy with room", proto.Report{Meetings: 99}, true},
		{"full meetings", proto.Report{Meetings: 100}, false},
		{"full cpu", proto.Report{CPU: 0.8}, false},
		{"draining", proto.Report{Draining: true}, false},
		{"not accepting", proto.Report{NotAccepting: true}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := testRegistry()
			join(t, r, "a", tc.rep, t0)
			p, err := r.lookup("m", t0)
			if !tc.want {
				require.ErrorIs(t, err, ErrNoCapacity)
				return
			}
			require.NoError(t, err)
			require.Equal(t, "a", p.MMR)
			require.False(t, p.Existing)
		})
	}
}

func TestSpreadFollowsLoad(t *testing.T) {
	r := testRegistry()
	join(t, r, "idle", proto.Report{}, t0)
	join(t, r, "half", proto.Report{Meetings: 50}, t0)
	join(t, r, "busy", proto.Report{Meetings: 90}, t0)
	counts := map[string]int{}
	const n = 20000
	for i := range n {
		m := r.chooseLocked(fmt.Sprintf("meeting-%d", i), t0)
		counts[m.id]++
	}
	// Weights (1-load)²: 1, 0.25, 0.01 → shares 0.794, 0.198, 0.008.
	require.InDelta(t, 0.794, float64(counts["idle"])/n, 0.02, counts)
	require.InDelta(t, 0.198, float64(counts["half"])/n, 0.02, counts)
	require.InDelta(t, 0.008, float64(counts["busy"])/n, 0.005, counts)
}

func TestExistingMeetingStays(t *testing.T) {
	r := testRegistry()
	now := t0
	sa := join(t, r, "a", proto.Report{Hosted: hosted("m1")}, now)
	join(t, r, "b", proto.Report{}, now)
	// a becomes full and draining: m1 still resolves to it, new meetings do not.
	require.NoError(t, r.report("a", sa, proto.Report{Meetings: 100, Draining: true}, now))
	p, err := r.lookup("m1", now)
	require.NoError(t, err)
	require.Equal(t, "a", p.MMR)
	require.True(t, p.Existing)
	for i := range 50 {
		p, err := r.lookup(fmt.Sprintf("new-%d", i), now)
		require.NoError(t, err)
		require.Equal(t, "b", p.MMR)
	}
	// Once a stops listing m1, it is a new meeting again.
	require.NoError(t, r.report("a", sa, proto.Report{Meetings: 100, Draining: true, Hosted: hosted()}, now))
	p, err = r.lookup("m1", now)
	require.NoError(t, err)
	require.Equal(t, "b", p.MMR)
	require.False(t, p.Existing)
}

func TestPendingPlacementIsSticky(t *testing.T) {
	r := testRegistry()
	sa := join(t, r, "a", proto.Report{}, t0)
	sb := join(t, r, "b", proto.Report{}, t0)
	first, err := r.lookup("m", t0)
	require.NoError(t, err)
	// Loads change so that the other MMR would now win; the remembered
	// placement holds until the TTL.
	loaded := proto.Report{Meetings: 99}
	other := "a"
	if first.MMR == "a" {
		require.NoError(t, r.report("a", sa, loaded, t0))
		other = "b"
	} else {
		require.NoError(t, r.report("b", sb, loaded, t0))
	}
	require.Equal(t, other, r.chooseLocked("m", t0).id)
	again, err := r.lookup("m", t0.Add(time.Second))
	require.NoError(t, err)
	require.Equal(t, first.MMR, again.MMR)
	require.True(t, again.Existing)
	// Keep both alive past the TTL, then the placement is made afresh.
	later := t0.Add(DefaultPlacementTTL + time.Second)
	require.NoError(t, r.report("a", sa, proto.Report{Meetings: tern(other == "a", 0, 99)}, later))
	require.NoError(t, r.report("b", sb, proto.Report{Meetings: tern(other == "b", 0, 99)}, later))
	fresh, err := r.lookup("m", later)
	require.NoError(t, err)
	require.Equal(t, other, fresh.MMR)
	require.False(t, fresh.Existing)
}

func tern(c bool, a, b int) int {
	if c {
		return a
	}
	return b
}

func TestExpiry(t *testing.T) {
	cases := []struct {
		name    string
		lost    bool // connection ended without Bye at t0
		stillIn time.Duration
		outAt   time.Duration
	}{
		{"missed reports", false, 3*time.Second - time.Nanosecond, 3 * time.Second},
		{"lost connection", true, time.Second - time.Nanosecond, time.Second},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := testRegistry()
			sa := join(t, r, "a", proto.Report{Hosted: hosted("m1")}, t0)
			if tc.lost {
				r.lost("a", sa, t0)
			}
			p, err := r.lookup("m1", t0.Add(tc.stillIn))
			require.NoError(t, err)
			require.Equal(t, "a", p.MMR)
			_, err = r.lookup("m1", t0.Add(tc.outAt))
			require.ErrorIs(t, err, ErrNoCapacity)
			require.Empty(t, r.snapshot(t0.Add(tc.outAt)))
			gone := r.sweep(t0.Add(tc.outAt))
			require.Equal(t, []expiredMMR{{"a", sa}}, gone)
			require.Empty(t, r.list)
			require.Empty(t, r.claims)
		})
	}
}

func TestDeadMMRMeetingsMove(t *testing.T) {
	r := testRegistry()
	ids := []string{"a", "b", "c"}
	sess := map[string]uint64{}
	for _, id := range ids {
		sess[id] = join(t, r, id, proto.Report{}, t0)
	}
	before := map[string]string{}
	for i := range 300 {
		m := fmt.Sprintf("m%d", i)
		p, err := r.lookup(m, t0)
		require.NoError(t, err)
		before[m] = p.MMR
	}
	// b stops reporting; a and c keep reporting the same load.
	now := t0.Add(3 * time.Second)
	defer func() {
		r.sweep(now)
		require.Len(t, r.list, 2)
		require.ElementsMatch(t, []*mmr{r.mmrs["a"], r.mmrs["c"]}, r.list)
	}()
	require.NoError(t, r.report("a", sess["a"], proto.Report{}, now))
	require.NoError(t, r.report("c", sess["c"], proto.Report{}, now))
	moved := 0
	for m, was := range before {
		p, err := r.lookup(m, now)
		require.NoError(t, err)
		if was == "b" {
			require.NotEqual(t, "b", p.MMR)
			require.False(t, p.Existing)
			moved++
		} else {
			require.Equal(t, was, p.MMR, "rendezvous hashing moves only the dead MMR's meetings")
		}
	}
	require.Positive(t, moved)
}

func TestConflictingClaims(t *testing.T) {
	cases := []struct {
		name   string
		pa, pb int
		want   string
	}{
		{"more participants wins", 5, 2, "a"},
		{"more participants wins (b)", 1, 3, "b"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := testRegistry()
			join(t, r, "a", proto.Report{Hosted: &[]proto.Hosted{{ID: "m", Participants: tc.pa}}}, t0)
			join(t, r, "b", proto.Report{Hosted: &[]proto.Hosted{{ID: "m", Participants: tc.pb}}}, t0)
			p, err := r.lookup("m", t0)
			require.NoError(t, err)
			require.Equal(t, tc.want, p.MMR)
		})
	}
	t.Run("tie is deterministic across registries", func(t *testing.T) {
		r1, r2 := testRegistry(), testRegistry()
		join(t, r1, "a", proto.Report{Hosted: hosted("m")}, t0)
		join(t, r1, "b", proto.Report{Hosted: hosted("m")}, t0)
		join(t, r2, "b", proto.Report{Hosted: hosted("m")}, t0) // other order
		join(t, r2, "a", proto.Report{Hosted: hosted("m")}, t0)
		p1, err := r1.lookup("m", t0)
		require.NoError(t, err)
		p2, err := r2.lookup("m", t0)
		require.NoError(t, err)
		require.Equal(t, p1.MMR, p2.MMR)
	})
}

// TestHAPairAgrees: two registries fed the same reports, registered in
// different orders, place every new meeting identically.
func TestHAPairAgrees(t *testing.T) {
	r1, r2 := testRegistry(), testRegistry()
	const n = 20
	for i := range n {
		rep := proto.Report{Meetings: i * 4, CPU: float64(i%5) / 10}
		join(t, r1, fmt.Sprintf("mmr-%02d", i), rep, t0)
		join(t, r2, fmt.Sprintf("mmr-%02d", n-1-i), proto.Report{Meetings: (n - 1 - i) * 4, CPU: float64((n-1-i)%5) / 10}, t0)
	}
	for i := range 2000 {
		m := fmt.Sprintf("meeting %d", i)
		p1, err := r1.lookup(m, t0)
		require.NoError(t, err)
		p2, err := r2.lookup(m, t0)
		require.NoError(t, err)
		require.Equal(t, p1.MMR, p2.MMR, m)
	}
}

func TestSessions(t *testing.T) {
	r := testRegistry()
	s1 := join(t, r, "a", proto.Report{Hosted: hosted("m1")}, t0)
	s2, old, err := r.register("a", testRegister(1), t0)
	require.NoError(t, err)
	require.Equal(t, s1, old)
	require.ErrorIs(t, r.report("a", s1, proto.Report{}, t0), errStaleSession)
	require.False(t, r.remove("a", s1), "a stale Bye must not remove the new registration")
	r.lost("a", s1, t0) // stale: ignored
	// The new registration keeps the hosted meetings until it reports.
	p, err := r.lookup("m1", t0)
	require.NoError(t, err)
	require.Equal(t, "a", p.MMR)
	require.True(t, p.Existing)
	require.NoError(t, r.report("a", s2, proto.Report{}, t0))
	require.Len(t, r.list, 1)
	require.True(t, r.remove("a", s2))
	require.Empty(t, r.mmrs)
	require.Empty(t, r.list)
	require.Empty(t, r.claims)
}

func TestLimits(t *testing.T) {
	r := testRegistry()
	r.maxMMRs, r.maxPending = 2, 3
	join(t, r, "a", proto.Report{}, t0)
	join(t, r, "b", proto.Report{}, t0)
	_, _, err := r.register("c", testRegister(3), t0)
	require.ErrorIs(t, err, errRegistryFull)
	_, _, err = r.register("a", testRegister(1), t0) // re-registration is not a new entry
	require.NoError(t, err)
	for i := range 10 {
		_, err := r.lookup(fmt.Sprintf("m%d", i), t0)
		require.NoError(t, err)
	}
	require.Len(t, r.pending, 3)
	r.sweep(t0.Add(DefaultPlacementTTL))
	require.Empty(t, r.pending)
}

// BenchmarkSelect measures placements of new meetings (the costly case: a
// rendezvous score per MMR) and lookups of existing ones, with 100 MMRs.
func BenchmarkSelect(b *testing.B) {
	r := testRegistry()
	r.maxPending = 0 // measure the selection, not the growth of the pending map
	for i := range 100 {
		join(b, r, fmt.Sprintf("mmr-%03d", i), proto.Report{Meetings: i % 90, Participants: i * 7, CPU: float64(i%7) / 10}, t0)
	}
	meetings := make([]string, 4096)
	for i := range meetings {
		meetings[i] = fmt.Sprintf("meeting-%d", i)
	}
	b.Run("new", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if _, err := r.lookup(meetings[i%len(meetings)], t0); err != nil {
				b.Fatal(err)
			}
			i++
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "selections/s")
	})
	b.Run("existing", func(b *testing.B) {
		sess, _, err := r.register("host", testRegister(200), t0)
		require.NoError(b, err)
		h := make([]proto.Hosted, len(meetings))
		for i, m := range meetings {
			h[i] = proto.Hosted{ID: m, Participants: 2}
		}
		require.NoError(b, r.report("host", sess, proto.Report{Hosted: &h}, t0))
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if _, err := r.lookup(meetings[i%len(meetings)], t0); err != nil {
				b.Fatal(err)
			}
			i++
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "selections/s")
	})
	b.Run("new-parallel", func(b *testing.B) {
		r.maxPending = 0
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				if _, err := r.lookup(meetings[i%len(meetings)]+"x", t0); err != nil {
					b.Error(err)
					return
				}
				i++
			}
		})
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "selections/s")
	})
}
