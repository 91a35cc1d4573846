package router

import (
	"context"
	"encoding/binary"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/stretchr/testify/require"

	"github.com/openmmr/mmr/client/udpmedia"
	"github.com/openmmr/mmr/media"
)

// newTestRouter starts a router on an ephemeral loopback port and closes it
// when the test ends.
func newTestRouter(t testing.TB, mut ...func(*Config)) *Router {
	t.Helper()
	cfg := Config{UDP: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:0")}, Shards: 2}
	for _, m := range mut {
		m(&cfg)
	}
	r, err := New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, r.Close()) })
	return r
}

// dialAddr is the address clients send to: the router's first UDP address,
// or for a wildcard router 127.0.0.2 (::1), which is not the source the
// kernel would pick for a reply to the client.
func dialAddr(r *Router) netip.AddrPort {
	ap := r.UDPAddrs()[0]
	switch {
	case ap.Addr().Is4() && ap.Addr().IsUnspecified():
		return netip.AddrPortFrom(netip.MustParseAddr("127.0.0.2"), ap.Port())
	case ap.Addr().IsUnspecified():
		return netip.AddrPortFrom(netip.IPv6Loopback(), ap.Port())
	}
	return ap
}

// member is a test participant with one bound flow per kind.
type member struct {
	info  ParticipantInfo
	flows [media.NumKinds]*udpmedia.Flow
	ssrc  [media.NumKinds]uint32
	seq   uint16
}

func join(t testing.TB, r *Router, meeting string, n int) *member {
	t.Helper()
	return joinWith(t, r, meeting, n, ParticipantOptions{Name: fmt.Sprint("p", n)})
}

// joinWith is join with the given participant options.
func joinWith(t testing.TB, r *Router, meeting string, n int, o ParticipantOptions) *member {
	t.Helper()
	info, err := r.AddParticipant(meeting, o)
	require.NoError(t, err)
	m := &member{info: info}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, k := range media.Kinds {
		f, err := udpmedia.Dial(ctx, dialAddr(r), k, info.Token)
		require.NoError(t, err)
		t.Cleanup(func() { f.Close() })
		m.flows[k.Index()] = f
		m.ssrc[k.Index()] = uint32(n)<<8 | uint32(k)
		require.NoError(t, r.Publish(info.ID, k, m.ssrc[k.Index()]))
	}
	return m
}

// rtpPacket builds an RTP packet whose payload names its sender, kind and
// sequence, so receivers can check every byte.
func (m *member) rtpPacket(t testing.TB, k media.Kind, size int) []byte {
	t.Helper()
	m.seq++
	payload := make([]byte, size-12)
	for i := range payload {
		payload[i] = byte(int(m.seq) + i + int(k))
	}
	binary.BigEndian.PutUint32(payload, m.ssrc[k.Index()])
	// Every 4th packet ends a video frame (RTP marker, RFC 3550 §5.1).
	pkt := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: m.seq, Timestamp: uint32(m.seq/4) * 3000, SSRC: m.ssrc[k.Index()], Marker: m.seq%4 == 0}, Payload: payload}
	b, err := pkt.Marshal()
	require.NoError(t, err)
	return b
}

// recvAll reads until want packets arrived on f or the deadline passes.
func recvAll(f transport, want int, d time.Duration) [][]byte {
	var got [][]byte
	deadline := time.Now().Add(d)
	buf := make([]byte, 2048)
	for len(got) < want {
		n, err := f.Recv(buf, deadline)
		if err != nil {
			break
		}
		got = append(got, append([]byte(nil), buf[:n]...))
	}
	return got
}

// quiet reports whether nothing arrives on f within d.
func quiet(f *udpmedia.Flow, d time.Duration) bool {
	buf := make([]byte, 2048)
	_, err := f.Recv(buf, time.Now().Add(d))
	return err != nil
}
