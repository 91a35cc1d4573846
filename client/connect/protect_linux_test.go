package connect_test

import (
	"context"
	"encoding/hex"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/openmmr/mmr/client/connect"
	"github.com/openmmr/mmr/client/connect/connecttest"
	"github.com/openmmr/mmr/internal/leaktest"
	"github.com/openmmr/mmr/media"
	"github.com/openmmr/mmr/wire"
)

// TestNoPlaintextOnTheWire is issue 10's capture bar: three clients, one
// per transport (UDP 8801, TCP 8801, TLS 443), exchange audio, video and
// content with a known 16-byte marker in every RTP payload and in RTCP
// sent to the router, while an AF_PACKET socket records every frame on
// loopback. The receivers decrypt and find the marker in what they get;
// no captured frame holds it, nor any client's media token, RTCP secret
// or meeting key. A clear datagram with the marker, sent beside, is
// found in the capture: it would see a plaintext payload.
func TestNoPlaintextOnTheWire(t *testing.T) {
	leaktest.Check(t)
	e := startEnv(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// The control datagram's port is captured with the zone's.
	ln, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	defer ln.Close()
	z := e.zones[0]
	capt := startCapture(t, z.UDPAddr.Port(), z.TCPAddr.Port(), z.TLSAddr.Port(), uint16(ln.LocalAddr().(*net.UDPAddr).Port))

	transports := []string{connect.UDP, connect.TCP, connect.TLS}
	rx := make([]*markerRx, len(transports))
	sess := make([]*connect.Session, len(transports))
	for i, tr := range transports {
		rx[i] = newMarkerRx()
		cfg := clientConfig(t, e, i, nil)
		cfg.Transport, cfg.OnMedia = tr, rx[i].onMedia
		s, _, err := connect.Connect(ctx, cfg)
		require.NoError(t, err, tr)
		defer s.Close()
		sess[i] = s
		for _, k := range media.Kinds {
			require.Equal(t, tr, s.Flow(k).Transport())
		}
	}
	const perStream = 30 // marker packets every receiver must open per stream
	for i, s := range sess {
		for _, k := range media.Kinds {
			ssrc := ssrcFor(i, k)
			seq := uint16(0)
			require.NoError(t, connecttest.Wait(ctx, 30*time.Second, func() bool {
				seq++
				_ = s.Flow(k).Send(markerRTP(ssrc, seq, 200+int(k)*300))
				if seq%10 == 0 {
					_ = s.Flow(k).Send(markerAPP(ssrc))
				}
				time.Sleep(2 * time.Millisecond) // pacing of the sends, not synchronisation
				for j := range rx {
					if j != i && rx[j].count(ssrc) < perStream {
						return false
					}
				}
				return true
			}), "%s from client %d (%s) not opened by every receiver", k, i, transports[i])
		}
	}
	// RTCP the router routes to a publisher: receiver reports about its
	// streams, from each of the others, sealed to the router, opened by
	// it, sealed again for the publisher's flow.
	for i, s := range sess {
		before := s.Media().Stats().RTCP.Opened
		require.NoError(t, connecttest.Wait(ctx, 20*time.Second, func() bool {
			for j, o := range sess {
				if j != i {
					for _, k := range media.Kinds {
						_ = o.Flow(k).Send(markerRR(ssrcFor(j, k), ssrcFor(i, k)))
					}
				}
			}
			time.Sleep(10 * time.Millisecond) // pacing of the reports
			return s.Media().Stats().RTCP.Opened >= before+3
		}), "client %d (%s) opened no routed RTCP", i, transports[i])
	}
	for _, s := range sess {
		st := s.Media().Stats()
		require.NotZero(t, st.RTP.Sealed)
		require.NotZero(t, st.RTCP.Sealed)
		require.Zero(t, st.RTCP.Rejected(), "%+v", st.RTCP)
	}

	// The positive control: the marker in clear, tagged, over loopback UDP.
	tag := []byte("clear-control-datagram")
	c, err := net.DialUDP("udp4", nil, ln.LocalAddr().(*net.UDPAddr))
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, connecttest.Wait(ctx, 10*time.Second, func() bool {
		_, _ = c.Write(append(append([]byte{}, tag...), marker...))
		time.Sleep(10 * time.Millisecond) // pacing of the control datagrams
		return capt.find(tag) > 0
	}), "the capture does not see loopback traffic")
	for _, s := range sess {
		require.NoError(t, s.Leave(ctx))
	}
	capt.stop()

	require.Zero(t, capt.stats.Drops, "the capture lost frames: it cannot vouch for them")
	require.Greater(t, capt.udpTo(z.UDPAddr.Port()), 3*perStream, "the UDP client's media is in the capture")
	require.Equal(t, capt.find(tag), capt.find(marker), "a frame other than the control datagram holds the marker in clear")
	for i, s := range sess {
		j := s.Joined()
		tok, err := wire.ParseToken(j.MediaToken)
		require.NoError(t, err)
		secret, err := hex.DecodeString(j.RTCPSecret)
		require.NoError(t, err)
		key, err := hex.DecodeString(j.MediaKey.Key)
		require.NoError(t, err)
		for name, needle := range map[string][]byte{"media token": tok[:], "media token (hex)": []byte(j.MediaToken),
			"rtcp secret": secret, "rtcp secret (hex)": []byte(j.RTCPSecret), "meeting key": key, "meeting key (hex)": []byte(j.MediaKey.Key)} {
			require.Zero(t, capt.find(needle), "client %d's %s is on the wire", i, name)
		}
	}
	t.Logf("captured %d frames, %d bytes; every stream opened %d+ marker packets at each receiver", len(capt.frames), capt.bytes, perStream)
}
