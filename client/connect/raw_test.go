package connect_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/openmmr/mmr/client/connect/connecttest"
	"github.com/openmmr/mmr/client/control"
	"github.com/openmmr/mmr/client/secure"
	"github.com/openmmr/mmr/client/udpmedia"
	"github.com/openmmr/mmr/control/token"
	"github.com/openmmr/mmr/media"
	"github.com/openmmr/mmr/protect"
	"github.com/openmmr/mmr/tlsutil"
	"github.com/openmmr/mmr/wire"
)

// rawMember is a participant built from the client's parts: the real
// control client (so its media protection is the one every client has)
// joined straight to the zone's MMR with a minted token, and an audio UDP
// flow left unprotected, so that the test seals and opens by hand with
// the member's State and holds the very bytes that cross the router.
type rawMember struct {
	t      *testing.T
	ctl    *control.Client
	st     *secure.State
	id     uint64
	ssrc   uint32
	flow   *udpmedia.Flow
	keyLog *lockedBuffer // every meeting key this member held
	seq    uint16

	mu     sync.Mutex
	opened map[uint32]map[uint16]bool // marker packets opened, per SSRC
	stop   chan struct{}
	done   chan struct{}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) keys(t *testing.T) []protect.MeetingKey {
	l.mu.Lock()
	defer l.mu.Unlock()
	ks, err := secure.ParseKeyLog(bytes.NewReader(l.b.Bytes()))
	require.NoError(t, err)
	return ks
}

func joinRaw(t *testing.T, z *connecttest.Zone, meeting, identity string, role token.Role, e2ee bool, ssrc uint32) *rawMember {
	t.Helper()
	return joinRawVia(t, z, z.TLSAddr.String(), z.Fingerprint, meeting, identity, role, e2ee, ssrc)
}

// joinRawVia is joinRaw with the control channel to ctlAddr, pinned to
// fingerprint (a man in the middle, say).
func joinRawVia(t *testing.T, z *connecttest.Zone, ctlAddr, fingerprint, meeting, identity string, role token.Role, e2ee bool, ssrc uint32) *rawMember {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	tok, err := token.Mint(joinSecret, token.Claims{Meeting: meeting, Identity: identity, Role: role, Expiry: time.Now().Add(time.Hour), E2EE: e2ee})
	require.NoError(t, err)
	tc, err := tlsutil.PinnedClientConfig(fingerprint)
	require.NoError(t, err)
	m := &rawMember{t: t, ssrc: ssrc, keyLog: &lockedBuffer{}, opened: map[uint32]map[uint16]bool{}, stop: make(chan struct{}), done: make(chan struct{})}
	m.ctl, err = control.Dial(ctx, ctlAddr, control.Config{TLS: tc, E2EE: e2ee, Logger: testLogger(t),
		Media: secure.Config{KeyLog: m.keyLog}})
	require.NoError(t, err)
	j, err := m.ctl.Join(ctx, meeting, tok, identity)
	require.NoError(t, err)
	m.id, m.st = j.Participant, m.ctl.Media()
	mt, err := wire.ParseToken(j.MediaToken)
	require.NoError(t, err)
	m.flow, err = udpmedia.Dial(ctx, z.UDPAddr, media.Audio, mt)
	require.NoError(t, err)
	require.NoError(t, m.ctl.Publish(ctx, media.Audio, ssrc))
	require.NoError(t, m.ctl.Subscribe(ctx, media.Audio))
	go m.read()
	t.Cleanup(m.close)
	return m
}

// read opens what the flow receives with the member's State and records
// the marker packets; it sends the flow's keepalives too.
func (m *rawMember) read() {
	defer close(m.done)
	buf := make([]byte, 2048)
	next := time.Now()
	for {
		select {
		case <-m.stop:
			return
		default:
		}
		if time.Now().After(next) {
			_ = m.flow.Keepalive()
			next = time.Now().Add(wire.ConsentInterval)
		}
		n, err := m.flow.Recv(buf, time.Now().Add(100*time.Millisecond))
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			continue
		}
		if err != nil {
			return
		}
		if wire.Classify(buf[:n]) != wire.ClassRTP {
			continue
		}
		p, err := m.st.OpenRTP(nil, buf[:n])
		if err != nil || !bytes.Contains(p[12:], marker) {
			continue
		}
		ssrc, seq := binary.BigEndian.Uint32(p[8:]), binary.BigEndian.Uint16(p[2:])
		m.mu.Lock()
		if m.opened[ssrc] == nil {
			m.opened[ssrc] = map[uint16]bool{}
		}
		m.opened[ssrc][seq] = true
		m.mu.Unlock()
	}
}

func (m *rawMember) has(ssrc uint32, seq uint16) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.opened[ssrc][seq]
}

// seal seals the member's next marker packet with its State.
func (m *rawMember) seal() (seq uint16, pkt []byte) {
	m.seq++
	p, err := m.st.SealRTP(nil, markerRTP(m.ssrc, m.seq, 200))
	require.NoError(m.t, err)
	return m.seq, p
}

// deliver sends fresh sealed marker packets until every one of to has
// opened one, and returns the last packet sent (its bytes, as sent).
func (m *rawMember) deliver(to ...*rawMember) []byte {
	m.t.Helper()
	var last []byte
	require.NoError(m.t, connecttest.Wait(context.Background(), 20*time.Second, func() bool {
		seq, p := m.seal()
		require.NoError(m.t, m.flow.Send(p))
		last = p
		time.Sleep(5 * time.Millisecond) // pacing of the sends, not synchronisation
		for _, r := range to {
			if !r.has(m.ssrc, seq) {
				return false
			}
		}
		return true
	}), "member %d's media not opened by all of its receivers", m.id)
	return last
}

func (m *rawMember) leave() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(m.t, m.ctl.Leave(ctx))
	m.close()
}

func (m *rawMember) close() {
	select {
	case <-m.stop:
		return
	default:
	}
	close(m.stop)
	<-m.done
	m.flow.Close()
	m.ctl.Close()
}
