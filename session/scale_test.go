package session

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/openmmr/mmr/media"
)

// BenchmarkWebinarJoin measures one join into a meeting that already has
// n participants of whom 2 publish audio and video (a webinar: panelists
// and viewers). The cost is what the registry lock is held for.
func BenchmarkWebinarJoin(b *testing.B) {
	for _, n := range []int{100, 1000, 10000} {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			r := NewRegistry()
			require.NoError(b, r.CreateMeeting("w"))
			for i := range n {
				p, err := r.Add("w", fmt.Sprint(i), [media.NumKinds]netip.AddrPort{}, noGroup)
				require.NoError(b, err)
				if i < 2 {
					require.NoError(b, r.Publish(p.ID, media.Audio, uint32(100+i)))
					require.NoError(b, r.Publish(p.ID, media.Video, uint32(200+i)))
				}
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				p, err := r.Add("w", fmt.Sprint("x", i), [media.NumKinds]netip.AddrPort{}, noGroup)
				if err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				if err := r.Remove(p.ID); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
		})
	}
}

// TestRoutesMatchDefinition applies random joins, leaves, publishes,
// unpublishes and subscription changes and checks after each one that
// every publishing flow's route is exactly the definition (every other
// participant whose filter admits the publisher), and that other flows
// route nowhere.
func TestRoutesMatchDefinition(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	r := NewRegistry()
	require.NoError(t, r.CreateMeeting("m"))
	var live []*Participant
	ssrc := uint32(0)
	for step := range 600 {
		switch op := rng.IntN(10); {
		case op < 3 || len(live) < 2:
			p, err := r.Add("m", fmt.Sprint(step), [media.NumKinds]netip.AddrPort{}, noGroup)
			require.NoError(t, err)
			live = append(live, p)
		case op < 4:
			i := rng.IntN(len(live))
			require.NoError(t, r.Remove(live[i].ID))
			live = slices.Delete(live, i, i+1)
		case op < 6:
			ssrc++
			require.NoError(t, r.Publish(live[rng.IntN(len(live))].ID, media.Kinds[rng.IntN(3)], ssrc))
		case op < 7:
			p := live[rng.IntN(len(live))]
			k := media.Kinds[rng.IntN(3)]
			require.NoError(t, r.Unpublish(p.ID, k, p.Flow(k).SSRCs()...))
		default:
			p := live[rng.IntN(len(live))]
			f := All()
			switch rng.IntN(3) {
			case 0:
				f = None()
			case 1:
				f = From(live[rng.IntN(len(live))].ID)
			}
			require.NoError(t, r.Subscribe(p.ID, media.Kinds[rng.IntN(3)], f))
		}
		for _, pub := range live {
			for i, k := range media.Kinds {
				got := pub.Flow(k).Route().Dests
				if len(pub.Flow(k).SSRCs()) == 0 {
					require.Empty(t, got, "step %d: non-publishing flow routes nowhere", step)
					continue
				}
				var want []*Flow
				for _, sub := range live {
					if sub != pub && sub.subs[i].Includes(pub.ID) {
						want = append(want, sub.Flows[i])
					}
				}
				require.ElementsMatch(t, want, got, "step %d: route of %d/%s", step, pub.ID, k)
			}
		}
	}
}

// routesOf snapshots every flow's route pointer in m.
func routesOf(m *Meeting) map[*Flow]*Route {
	out := map[*Flow]*Route{}
	for _, p := range m.parts {
		for _, f := range p.Flows {
			out[f] = f.route.Load()
		}
	}
	return out
}

func changed(before, after map[*Flow]*Route) int {
	n := 0
	for f, r := range after {
		if old, ok := before[f]; ok && old != r {
			n++
		}
	}
	return n
}

// TestLargeMeetingChangesAreLocal: in a meeting of 1,000 where 200
// publish audio, a subscription change rebuilds the routes of the
// publishers whose inclusion changed (2 for From(a) → From(b)), not all
// 200 (main rebuilt every publishing route, O(publishers × n) work per
// change); a join or leave touches only the publishers' routes.
func TestLargeMeetingChangesAreLocal(t *testing.T) {
	r := NewRegistry()
	require.NoError(t, r.CreateMeeting("m"))
	var ps []*Participant
	const pubs = 200 // of 1,000 (fewer than all only to keep the race-detector run short)
	for i := range 1000 {
		p, err := r.Add("m", fmt.Sprint(i), [media.NumKinds]netip.AddrPort{}, noGroup)
		require.NoError(t, err)
		if i < pubs {
			require.NoError(t, r.Publish(p.ID, media.Audio, uint32(1+i)))
		}
		ps = append(ps, p)
	}
	m := ps[0].Meeting
	sub := ps[500]
	require.NoError(t, r.Subscribe(sub.ID, media.Audio, From(ps[1].ID)))
	before := routesOf(m)
	require.NoError(t, r.Subscribe(sub.ID, media.Audio, From(ps[2].ID)))
	require.Equal(t, 2, changed(before, routesOf(m)), "routes rebuilt by From(a) → From(b)")
	require.True(t, ps[2].Flow(media.Audio).Route().Has(sub.Flow(media.Audio)))
	require.False(t, ps[1].Flow(media.Audio).Route().Has(sub.Flow(media.Audio)))

	before = routesOf(m)
	v, err := r.Add("m", "viewer", [media.NumKinds]netip.AddrPort{}, noGroup)
	require.NoError(t, err)
	require.Equal(t, pubs, changed(before, routesOf(m)), "a join adds itself to the audio publishers' routes only")
	before = routesOf(m)
	require.NoError(t, r.Remove(v.ID))
	require.Equal(t, pubs, changed(before, routesOf(m)))

	require.NoError(t, r.EndMeeting("m"))
	for _, p := range ps {
		require.Empty(t, p.Flow(media.Audio).Route().Dests)
		_, ok := r.Handles.Get(p.Handle)
		require.False(t, ok)
	}
	meetings, parts := r.Counts()
	require.Zero(t, meetings+parts)
}

// BenchmarkSubscribeChange: one From(a) → From(b) change in a meeting of
// n where everyone publishes audio.
func BenchmarkSubscribeChange(b *testing.B) {
	for _, n := range []int{100, 1000} {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			r := NewRegistry()
			require.NoError(b, r.CreateMeeting("m"))
			var ps []*Participant
			for i := range n {
				p, err := r.Add("m", fmt.Sprint(i), [media.NumKinds]netip.AddrPort{}, noGroup)
				require.NoError(b, err)
				require.NoError(b, r.Publish(p.ID, media.Audio, uint32(1+i)))
				ps = append(ps, p)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				if err := r.Subscribe(ps[0].ID, media.Audio, From(ps[1+i%(n-1)].ID)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkEndMeeting: ending a webinar of n viewers and 2 panelists.
func BenchmarkEndMeeting(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			for range b.N {
				b.StopTimer()
				r := NewRegistry()
				require.NoError(b, r.CreateMeeting("w"))
				for i := range n {
					p, err := r.Add("w", fmt.Sprint(i), [media.NumKinds]netip.AddrPort{}, noGroup)
					require.NoError(b, err)
					if i < 2 {
						require.NoError(b, r.Publish(p.ID, media.Audio, uint32(100+i)))
						require.NoError(b, r.Publish(p.ID, media.Video, uint32(200+i)))
					}
				}
				b.StartTimer()
				require.NoError(b, r.EndMeeting("w"))
			}
		})
	}
}
