package control

import (
	"crypto/tls"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/openmmr/mmr/control/proto"
	"github.com/openmmr/mmr/control/token"
)

// recorder keeps every byte read from the TCP connection under a TLS
// client, to inspect the TLS records the server sent.
type recorder struct {
	net.Conn
	mu  sync.Mutex
	got []byte
}

func (r *recorder) Read(b []byte) (int, error) {
	n, err := r.Conn.Read(b)
	r.mu.Lock()
	r.got = append(r.got, b[:n]...)
	r.mu.Unlock()
	return n, err
}

// lastRecordType returns the content type of the last complete TLS record
// received (21: alert; under TLS 1.2 a close_notify is an alert record).
func (r *recorder) lastRecordType() byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	b, last := r.got, byte(0)
	for len(b) >= 5 {
		n := 5 + (int(b[3])<<8 | int(b[4]))
		if len(b) < n {
			break
		}
		last, b = b[0], b[n:]
	}
	return last
}

// dialTLS12 opens a raw control connection over TLS 1.2 (whose alert
// records are visible on the wire) through a recorder.
func dialTLS12(t *testing.T, e *env) (*rawConn, *recorder) {
	nc, err := net.Dial("tcp", e.addr())
	require.NoError(t, err)
	rec := &recorder{Conn: nc}
	cfg := e.clientTLS(t)
	cfg.MaxVersion = tls.VersionTLS12
	tc := tls.Client(rec, cfg)
	t.Cleanup(func() { tc.Close() })
	require.NoError(t, tc.SetDeadline(time.Now().Add(waitLimit)))
	require.NoError(t, tc.Handshake())
	return &rawConn{t: t, tc: tc, fr: proto.NewFrameReader(tc, proto.ClientMaxFrame)}, rec
}

// readToEOF reads until the server ends the connection and requires a
// clean end: EOF after a TLS close_notify alert, not a reset or timeout.
func readToEOF(t *testing.T, r *rawConn, rec *recorder) {
	t.Helper()
	_, err := io.Copy(io.Discard, r.tc)
	require.NoError(t, err, "a clean end (io.Copy treats EOF as success)")
	require.Equal(t, byte(21), rec.lastRecordType(), "the last TLS record is the close_notify alert")
}

// TestFatalEndsWithCloseNotify: the fatal errors replaced and
// meeting-ended end the connection with a TLS close_notify after the
// frame, as the state machine says (issue 9), not with a bare close.
func TestFatalEndsWithCloseNotify(t *testing.T) {
	noLeaks(t)
	e := startServer(t, newFakeRouter(), nil)
	t.Run("replaced", func(t *testing.T) {
		a, rec := dialTLS12(t, e)
		a.hello()
		a.send(2, &proto.Join{Meeting: "m1", Token: mint(t, "m1", "alice", token.Participant)})
		_, m := a.next()
		j := m.(*proto.Joined)
		b := e.raw(t)
		b.hello()
		b.send(2, &proto.Resume{Participant: j.Participant, Credential: j.Resume})
		_, m = b.next()
		require.IsType(t, &proto.Resumed{}, m)
		_, m = a.next()
		require.Equal(t, proto.CodeReplaced, m.(*proto.Error).Code)
		readToEOF(t, a, rec)
	})
	t.Run("meeting-ended", func(t *testing.T) {
		h, rec := dialTLS12(t, e)
		h.hello()
		h.send(2, &proto.Join{Meeting: "m2", Token: mint(t, "m2", "host", token.Host)})
		_, m := h.next()
		require.IsType(t, &proto.Joined{}, m)
		h.send(3, &proto.EndMeeting{})
		_, m = h.next()
		require.IsType(t, &proto.OK{}, m)
		_, m = h.next()
		require.IsType(t, &proto.MeetingEnded{}, m)
		readToEOF(t, h, rec)
	})
}

// TestClientSentWelcomeIsUnexpected: a message only servers send is
// unexpected-message, whatever its body, not bad-message.
func TestClientSentWelcomeIsUnexpected(t *testing.T) {
	noLeaks(t)
	e := startServer(t, newFakeRouter(), nil)
	for _, p := range []string{`{"type":"welcome"}`, `{"type":"welcome","body":{"version":1}}`, `{"type":"joined","id":3}`} {
		r := e.raw(t)
		r.hello()
		r.payload(p)
		r.expectFatal(proto.CodeUnexpected)
	}
}

// TestInvalidUTF8NameRefused: a join whose name is not valid UTF-8 is
// refused (encoding/json would have turned it into U+FFFD and accepted it).
func TestInvalidUTF8NameRefused(t *testing.T) {
	noLeaks(t)
	rt := newFakeRouter()
	e := startServer(t, rt, nil)
	r := e.raw(t)
	r.hello()
	r.payload(`{"type":"join","id":2,"body":{"meeting":"m","token":"` + mint(t, "m", "alice", token.Participant) + `","name":"bad ` + "\xff\xfe" + ` name"}}`)
	r.expectFatal(proto.CodeBadMessage)
	meetings, parts := rt.counts()
	require.Zero(t, meetings+parts, "nobody joined")
}
