package control

import (
	"encoding/binary"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/openmmr/mmr/control/proto"
	"github.com/openmmr/mmr/control/token"
	"github.com/stretchr/testify/require"
)

// TestBadInput sends what no correct client sends; each gets its error code
// and then the connection closes.
func TestBadInput(t *testing.T) {
	noLeaks(t)
	rt := newFakeRouter()
	e := startServer(t, rt, nil)
	frameOf := func(n uint32) []byte { return binary.BigEndian.AppendUint32(nil, n) }
	tests := []struct {
		name   string
		joined bool // join first
		send   func(r *rawConn)
		code   string
	}{
		{"garbage", false, func(r *rawConn) { r.payload("GET / HTTP/1.1\r\n\r\n") }, proto.CodeBadFrame},
		{"binary garbage", false, func(r *rawConn) { r.writeRaw([]byte{0, 0, 0, 4, 0xde, 0xad, 0xbe, 0xef}) }, proto.CodeBadFrame},
		{"empty frame", false, func(r *rawConn) { r.writeRaw(frameOf(0)) }, proto.CodeBadFrame},
		{"oversize frame", false, func(r *rawConn) {
			r.writeRaw(append(frameOf(proto.DefaultMaxFrame+1), make([]byte, 4096)...))
		}, proto.CodeFrameTooLarge},
		{"4 GiB frame", true, func(r *rawConn) { r.writeRaw(frameOf(0xffffffff)) }, proto.CodeFrameTooLarge},
		{"unknown type", false, func(r *rawConn) { r.payload(`{"type":"teleport","id":1}`) }, proto.CodeUnknownMessage},
		{"join before hello", false, func(r *rawConn) {
			r.send(1, &proto.Join{Meeting: "m", Token: mint(t, "m", "x", token.Host)})
		}, proto.CodeUnexpected},
		{"publish before join", false, func(r *rawConn) {
			r.hello()
			r.payload(`{"type":"publish","id":2,"body":{"kind":"audio","ssrcs":[1]}}`)
		}, proto.CodeUnexpected},
		{"hello twice", false, func(r *rawConn) { r.hello(); r.send(2, &proto.Hello{Versions: []int{1}}) }, proto.CodeUnexpected},
		{"join twice", true, func(r *rawConn) {
			r.send(3, &proto.Join{Meeting: "m", Token: mint(t, "m", "x", token.Host)})
		}, proto.CodeUnexpected},
		{"server-only message", true, func(r *rawConn) { r.send(3, &proto.OK{}) }, proto.CodeUnexpected},
		{"bad body", true, func(r *rawConn) { r.payload(`{"type":"publish","id":3,"body":{"kind":"smell","ssrcs":[1]}}`) }, proto.CodeBadMessage},
		{"ssrc zero", true, func(r *rawConn) { r.payload(`{"type":"publish","id":3,"body":{"kind":"audio","ssrcs":[0]}}`) }, proto.CodeBadMessage},
		{"unsupported version", false, func(r *rawConn) { r.send(1, &proto.Hello{Versions: []int{2, 3}}) }, proto.CodeVersion},
		{"huge name", false, func(r *rawConn) {
			r.hello()
			r.payload(`{"type":"join","id":2,"body":{"meeting":"m","token":"t","name":"` + strings.Repeat("n", 1000) + `"}}`)
		}, proto.CodeBadMessage},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := e.srv.Stats()
			r := e.raw(t)
			if tc.joined {
				r.hello()
				r.send(2, &proto.Join{Meeting: "m", Token: mint(t, "m", "x", token.Host)})
				_, m := r.next()
				require.IsType(t, &proto.Joined{}, m)
			}
			tc.send(r)
			r.expectFatal(tc.code)
			require.Eventually(t, func() bool { return e.srv.Stats().ProtocolErrors > before.ProtocolErrors }, waitLimit, time.Millisecond)
		})
	}
	require.Eventually(t, func() bool { return e.srv.Stats().Conns == 0 }, waitLimit, time.Millisecond)
}

// TestTimeouts: a client that never starts TLS, one that never says hello,
// and a joined one that stops answering are all cut off.
func TestTimeouts(t *testing.T) {
	noLeaks(t)
	rt := newFakeRouter()
	e := startServer(t, rt, func(c *Config) {
		c.HandshakeTimeout = 300 * time.Millisecond
		c.IdleTimeout = 300 * time.Millisecond
		c.PingInterval = 100 * time.Millisecond
		c.Grace = -1 // a drop is a leave, so the meeting sees it at once
	})
	t.Run("silent TCP", func(t *testing.T) {
		nc, err := net.Dial("tcp", e.addr())
		require.NoError(t, err)
		defer nc.Close()
		require.NoError(t, nc.SetReadDeadline(time.Now().Add(waitLimit)))
		_, err = nc.Read(make([]byte, 1))
		require.Error(t, err)
		var ne net.Error
		require.False(t, errors.As(err, &ne) && ne.Timeout(), "server kept a silent connection")
	})
	t.Run("no hello", func(t *testing.T) {
		r := e.raw(t)
		r.expectFatal(proto.CodeTimeout)
	})
	t.Run("no join", func(t *testing.T) {
		r := e.raw(t)
		r.hello()
		r.expectFatal(proto.CodeTimeout)
	})
	t.Run("idle after join", func(t *testing.T) {
		watcher := e.join(t, "m", "watcher", token.Participant) // the Go client answers pings
		r := e.raw(t)
		r.hello()
		r.send(2, &proto.Join{Meeting: "m", Token: mint(t, "m", "mute", token.Participant)})
		_, m := r.next()
		j := m.(*proto.Joined)
		r.expectFatal(proto.CodeTimeout) // it never answered the server's pings
		watcher.ev.waitFor(t, "mute left", func(m proto.Message) bool {
			pl, ok := m.(*proto.ParticipantLeft)
			return ok && pl.Participant == j.Participant && pl.Reason == proto.ReasonTimeout
		})
		_, _, err := watcher.c.Ping(ctxT(t))
		require.NoError(t, err, "a client that answers pings stays")
	})
	require.GreaterOrEqual(t, e.srv.Stats().Timeouts, uint64(3))
	require.GreaterOrEqual(t, e.srv.Stats().HandshakeFailed, uint64(1))
}

// TestSlowConsumer: a client that floods requests and never reads its
// answers is disconnected; the meeting's fan-out is not held up.
func TestSlowConsumer(t *testing.T) {
	noLeaks(t)
	e := startServer(t, newFakeRouter(), func(c *Config) {
		c.SendQueue = 8
		c.WriteTimeout = 200 * time.Millisecond
	})
	peer := e.join(t, "m", "peer", token.Participant)
	r := e.raw(t)
	r.hello()
	r.send(2, &proto.Join{Meeting: "m", Token: mint(t, "m", "slow", token.Participant)})
	ping, err := proto.Encode(9, &proto.Ping{})
	require.NoError(t, err)
	batch := []byte{}
	for range 256 {
		batch = append(batch, ping...)
	}
	// Write pings without reading a single pong until the server gives up.
	require.NoError(t, r.tc.SetWriteDeadline(time.Now().Add(waitLimit)))
	for e.srv.Stats().SlowConsumers == 0 {
		if _, err := r.tc.Write(batch); err != nil {
			break
		}
	}
	require.Eventually(t, func() bool { return e.srv.Stats().SlowConsumers >= 1 }, waitLimit, time.Millisecond)
	// The meeting goes on.
	other := e.join(t, "m", "other", token.Participant)
	peer.ev.waitFor(t, "other joined", func(m proto.Message) bool {
		pj, ok := m.(*proto.ParticipantJoined)
		return ok && pj.Participant.ID == other.id()
	})
}
