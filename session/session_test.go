package session

import (
	"fmt"
	"net/netip"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/openmmr/mmr/egress"
	"github.com/openmmr/mmr/media"
)

func TestTablePutGetDelete(t *testing.T) {
	tab := NewTable[AddrKey, int](hashKey)
	const n = 20000
	for i := 0; i < n; i++ {
		tab.Put(KeyOf(netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), uint16(i))), i)
	}
	require.Equal(t, n, tab.Len())
	for i := 0; i < n; i += 7 {
		v, ok := tab.Get(KeyOf(netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), uint16(i))))
		require.True(t, ok)
		require.Equal(t, i, v)
	}
	k := KeyOf(netip.MustParseAddrPort("10.0.0.0:0"))
	tab.Delete(k)
	tab.Delete(k)
	_, ok := tab.Get(k)
	require.False(t, ok)
	require.Equal(t, n-1, tab.Len())
}

func TestTableConcurrentReaders(t *testing.T) {
	tab := NewTable[AddrKey, int](hashKey)
	key := func(i int) AddrKey { return KeyOf(netip.AddrPortFrom(netip.IPv6Loopback(), uint16(i))) }
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for r := 0; r < 2; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				for i := 0; i < 100; i++ {
					if v, ok := tab.Get(key(i)); ok && v != i {
						panic("torn read")
					}
				}
			}
		}()
	}
	for round := 0; round < 50; round++ {
		for i := 0; i < 100; i++ {
			tab.Put(key(i), i)
		}
		for i := 0; i < 100; i += 2 {
			tab.Delete(key(i))
		}
	}
	close(stop)
	wg.Wait()
}

func TestAddrKeyRoundTrip(t *testing.T) {
	for _, s := range []string{"127.0.0.1:8801", "[::1]:9", "[2001:db8::1]:65535"} {
		ap := netip.MustParseAddrPort(s)
		require.Equal(t, ap, KeyOf(ap).AddrPort(), s)
	}
	// An IPv4 source and its IPv4-mapped form are one key.
	require.Equal(t, KeyOf(netip.MustParseAddrPort("1.2.3.4:5")), KeyOf(netip.MustParseAddrPort("[::ffff:1.2.3.4]:5")))
}

func noGroup(netip.AddrPort) int { return 0 }

func TestRegistryRoutes(t *testing.T) {
	r := NewRegistry()
	require.NoError(t, r.CreateMeeting("m"))
	require.ErrorIs(t, r.CreateMeeting("m"), ErrMeetingExists)
	require.ErrorIs(t, r.CreateMeeting(""), ErrMeetingID)
	var ps []*Participant
	for i := 0; i < 4; i++ {
		p, err := r.Add("m", fmt.Sprint(i), [media.NumKinds]netip.AddrPort{}, noGroup)
		require.NoError(t, err)
		ps = append(ps, p)
	}
	require.Empty(t, ps[0].Flow(media.Audio).Route().Dests, "a flow that publishes nothing has no route")
	for i, p := range ps {
		require.NoError(t, r.Publish(p.ID, media.Audio, uint32(10+i)))
		require.NoError(t, r.Publish(p.ID, media.Video, uint32(20+i)))
	}
	dests := func(p *Participant, k media.Kind) []uint64 {
		var ids []uint64
		for _, f := range p.Flow(k).Route().Dests {
			require.Equal(t, k, f.Kind)
			ids = append(ids, f.Participant.ID)
		}
		return ids
	}
	require.Equal(t, []uint64{2, 3, 4}, dests(ps[0], media.Audio))
	require.NoError(t, r.Subscribe(ps[1].ID, media.Video, From(ps[2].ID)))
	require.Equal(t, []uint64{3, 4}, dests(ps[0], media.Video))
	require.Equal(t, []uint64{1, 2, 4}, dests(ps[2], media.Video))
	require.NoError(t, r.Remove(ps[3].ID))
	require.Equal(t, []uint64{2, 3}, dests(ps[0], media.Audio))
	require.Empty(t, dests(ps[3], media.Audio), "a removed participant's flows go nowhere")
	_, ok := r.Handles.Get(ps[3].Handle)
	require.False(t, ok, "its token no longer binds")
	require.Equal(t, []MeetingInfo{{ID: "m", Participants: 3}}, r.Meetings())
	require.NoError(t, r.EndMeeting("m"))
	m, n := r.Counts()
	require.Zero(t, m)
	require.Zero(t, n)
}

func TestRegistryPublish(t *testing.T) {
	r := NewRegistry()
	require.NoError(t, r.CreateMeeting("m"))
	require.NoError(t, r.CreateMeeting("other"))
	a, _ := r.Add("m", "a", [media.NumKinds]netip.AddrPort{}, noGroup)
	b, _ := r.Add("m", "b", [media.NumKinds]netip.AddrPort{}, noGroup)
	c, _ := r.Add("other", "c", [media.NumKinds]netip.AddrPort{}, noGroup)
	for _, tc := range []struct {
		name string
		err  error
		do   func() error
	}{
		{"ok", nil, func() error { return r.Publish(a.ID, media.Video, 1, 2) }},
		{"again is idempotent", nil, func() error { return r.Publish(a.ID, media.Video, 2) }},
		{"taken in meeting", ErrSSRCInUse, func() error { return r.Publish(b.ID, media.Audio, 1) }},
		{"other meeting may reuse", nil, func() error { return r.Publish(c.ID, media.Audio, 1) }},
		{"zero", ErrSSRCZero, func() error { return r.Publish(b.ID, media.Audio, 0) }},
		{"bad kind", ErrKind, func() error { return r.Publish(b.ID, 0, 5) }},
		{"too many", ErrTooManySSRCs, func() error { return r.Publish(b.ID, media.Audio, 10, 11, 12, 13, 14, 15, 16, 17, 18) }},
		{"unknown participant", ErrNoParticipant, func() error { return r.Publish(999, media.Audio, 5) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.do()
			if tc.err == nil {
				require.NoError(t, err)
			} else {
				require.ErrorIs(t, err, tc.err)
			}
		})
	}
	f, ok := a.Meeting.Owner(2)
	require.True(t, ok)
	require.Equal(t, a.Flow(media.Video), f)
	require.True(t, f.Publishes(1))
	require.NoError(t, r.Unpublish(a.ID, media.Video, 1))
	require.False(t, f.Publishes(1))
	_, ok = a.Meeting.Owner(1)
	require.False(t, ok)
}

func TestRegistryBindMovesAndSteals(t *testing.T) {
	r := NewRegistry()
	require.NoError(t, r.CreateMeeting("m"))
	a, _ := r.Add("m", "a", [media.NumKinds]netip.AddrPort{}, noGroup)
	b, _ := r.Add("m", "b", [media.NumKinds]netip.AddrPort{}, noGroup)
	x, y := netip.MustParseAddrPort("10.0.0.1:1000"), netip.MustParseAddrPort("10.0.0.1:2000")
	require.True(t, r.Bind(a, media.Audio, x, 0, egress.Src{}))
	require.True(t, r.Bind(a, media.Audio, y, 0, egress.Src{})) // NAT rebinding: moves
	_, ok := r.Flows.Get(KeyOf(x))
	require.False(t, ok, "old address unbound at once")
	f, ok := r.Flows.Get(KeyOf(y))
	require.True(t, ok)
	require.Equal(t, a.Flow(media.Audio), f)
	require.True(t, r.Bind(b, media.Audio, y, 0, egress.Src{})) // the latest valid bind wins
	f, _ = r.Flows.Get(KeyOf(y))
	require.Equal(t, b.Flow(media.Audio), f)
	require.Nil(t, a.Flow(media.Audio).Remote())
	require.NoError(t, r.Remove(b.ID))
	require.False(t, r.Bind(b, media.Audio, x, 0, egress.Src{}), "a removed participant cannot bind")
}

func TestRegistryHandles(t *testing.T) {
	r := NewRegistry()
	require.NoError(t, r.CreateMeeting("m"))
	seen := map[[16]byte]bool{}
	for i := range 50 {
		p, err := r.Add("m", fmt.Sprint(i), [media.NumKinds]netip.AddrPort{}, noGroup)
		require.NoError(t, err)
		require.Equal(t, p.Token.Handle(), p.Handle, "the handle is the token's")
		got, ok := r.Handles.Get(p.Handle)
		require.True(t, ok)
		require.Same(t, p, got)
		require.False(t, seen[p.Token])
		seen[p.Token] = true
	}
	require.Equal(t, 50, r.Handles.Len())
}

// TestAcceptBindCounter: the counter only rises, and of concurrent
// callers offering the same counter exactly one wins.
func TestAcceptBindCounter(t *testing.T) {
	f := &Flow{Kind: media.Audio}
	require.Zero(t, f.BindCounter())
	require.False(t, f.AcceptBindCounter(0), "0 is never above the start")
	require.True(t, f.AcceptBindCounter(5))
	require.False(t, f.AcceptBindCounter(5), "replayed")
	require.False(t, f.AcceptBindCounter(4), "older")
	require.True(t, f.AcceptBindCounter(1<<60))
	require.Equal(t, uint64(1<<60), f.BindCounter())

	for c := uint64(1<<60 + 1); c < 1<<60+200; c++ {
		var wins sync.WaitGroup
		var mu sync.Mutex
		won := 0
		for range 4 {
			wins.Go(func() {
				if f.AcceptBindCounter(c) {
					mu.Lock()
					won++
					mu.Unlock()
				}
			})
		}
		wins.Wait()
		require.Equal(t, 1, won, "counter %d", c)
	}
}
