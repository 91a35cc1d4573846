package control

import (
	"testing"
	"time"

	"github.com/openmmr/mmr/control/proto"
	"github.com/openmmr/mmr/control/token"
	"github.com/stretchr/testify/require"
)

func TestLimiter(t *testing.T) {
	t0 := time.Unix(1000, 0)
	type step struct {
		at   time.Duration // since t0
		n    int           // messages at that instant
		want verdict       // verdict of the last of them
	}
	tests := []struct {
		name        string
		rate, burst int
		steps       []step
	}{
		{"burst passes", 10, 5, []step{{0, 5, allow}}},
		{"one over the burst is refused", 10, 5, []step{{0, 5, allow}, {0, 1, refuse}}},
		{"refill at rate", 10, 5, []step{{0, 5, allow}, {100 * time.Millisecond, 1, allow}, {100 * time.Millisecond, 1, refuse}}},
		{"refill capped at burst", 10, 5, []step{{time.Hour, 5, allow}, {time.Hour, 1, refuse}}},
		{"a burst of refusals cuts off", 10, 5, []step{{0, 5, allow}, {0, 4, refuse}, {0, 1, cutOff}}},
		{"backing off pays the debt", 10, 5, []step{{0, 5, allow}, {0, 3, refuse}, {400 * time.Millisecond, 1, allow}}},
		{"still in debt", 10, 5, []step{{0, 5, allow}, {0, 3, refuse}, {300 * time.Millisecond, 1, refuse}}},
		{"clock going back is ignored", 10, 5, []step{{time.Second, 5, allow}, {0, 1, refuse}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l := newLimiter(tc.rate, tc.burst, t0)
			for i, s := range tc.steps {
				var v verdict
				for range s.n {
					v = l.take(t0.Add(s.at))
				}
				require.Equal(t, s.want, v, "step %d", i)
			}
		})
	}
}

// TestRateLimit floods a real connection: the burst is answered, what
// follows is refused without being executed, a client that keeps going is
// cut off, and one that backs off is served again.
func TestRateLimit(t *testing.T) {
	noLeaks(t)
	rt := newFakeRouter()
	const rate, burst = 2, 10
	e := startServer(t, rt, func(c *Config) { c.RequestRate, c.RequestBurst = rate, burst })

	joinRaw := func(t *testing.T, identity string) *rawConn {
		r := e.raw(t)
		r.hello()
		r.send(2, &proto.Join{Meeting: "m", Token: mint(t, "m", identity, token.Host)})
		_, m := r.next()
		require.IsType(t, &proto.Joined{}, m)
		return r
	}
	pings := func(t *testing.T, r *rawConn, first uint32, n int) {
		var b []byte
		for i := range n {
			f, err := proto.Encode(first+uint32(i), &proto.Ping{})
			require.NoError(t, err)
			b = append(b, f...)
		}
		r.writeRaw(b) // one write: the server sees them back to back
	}
	// read returns the next reply that is not an event.
	read := func(r *rawConn) (uint32, proto.Message) {
		for {
			id, m := r.next()
			switch m.(type) {
			case *proto.Pong, *proto.Error:
				return id, m
			}
		}
	}

	t.Run("flood is cut off", func(t *testing.T) {
		before := e.srv.Stats()
		r := joinRaw(t, "flood")
		pings(t, r, 100, 5*burst) // hello and join spent 2 tokens
		pongs, refused := 0, 0
		for {
			id, m := read(r)
			if _, ok := m.(*proto.Pong); ok {
				require.Zero(t, refused, "pong %d after a refusal", id)
				pongs++
				continue
			}
			er := m.(*proto.Error)
			require.Equal(t, proto.CodeRateLimited, er.Code, er.Message)
			if !er.Fatal {
				refused++
				continue
			}
			r.expectClosed()
			break
		}
		// burst-2 pongs, plus at most a few tokens refilled while the
		// server read (rate 2/s): the rest were refused, then the cut.
		require.GreaterOrEqual(t, pongs, burst-2)
		require.Less(t, pongs, burst+2)
		require.GreaterOrEqual(t, refused, burst-2)
		st := e.srv.Stats()
		require.Equal(t, before.RateCutOff+1, st.RateCutOff)
		require.Equal(t, before.RateLimited+uint64(refused)+1, st.RateLimited)
	})

	t.Run("backing off recovers", func(t *testing.T) {
		r := joinRaw(t, "polite")
		pings(t, r, 100, burst) // 2 more than the bucket holds
		pongs, refused := 0, 0
		for pongs+refused < burst {
			_, m := read(r)
			if er, ok := m.(*proto.Error); ok {
				require.Equal(t, proto.CodeRateLimited, er.Code)
				require.False(t, er.Fatal)
				refused++
			} else {
				pongs++
			}
		}
		require.GreaterOrEqual(t, refused, 1)
		// The debt is at most 2 tokens: (2+1)/rate seconds pay it back.
		time.Sleep(time.Duration(float64(time.Second) * 3.5 / rate))
		pings(t, r, 200, 1)
		id, m := read(r)
		require.IsType(t, &proto.Pong{}, m)
		require.Equal(t, uint32(200), id)
	})
}
