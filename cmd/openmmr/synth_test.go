package main

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/openmmr/mmr/media"
	"github.com/openmmr/mmr/wire"
)

func TestSyntheticProfiles(t *testing.T) {
	for _, k := range media.Kinds {
		t.Run(k.String(), func(t *testing.T) {
			g := newGenerator(k, 0x77, 65530) // sequence numbers wrap during the test
			rx := newRxStats(k)
			var pkts [][]byte
			bytes, frames, keys := 0, 0, 0
			now := time.Unix(1000, 0)
			seq := uint16(65530)
			for range 300 {
				var wait time.Duration
				var err error
				pkts, wait, err = g.next(pkts, now)
				require.NoError(t, err)
				require.Equal(t, profiles[k].Interval, wait)
				frames++
				for i, p := range pkts {
					require.LessOrEqual(t, len(p), MaxPacket)
					require.Equal(t, seq, binary.BigEndian.Uint16(p[2:]), "consecutive sequence numbers")
					seq++
					require.Equal(t, uint32(0x77), binary.BigEndian.Uint32(p[8:]))
					last := i == len(pkts)-1
					require.Equal(t, last && k != media.Audio, p[1]&0x80 != 0, "marker on the last packet of a frame")
					if i == 0 && p[rtpHeader] == 1 {
						keys++
					}
					bytes += len(p)
					rx.add(p, now)
				}
				now = now.Add(wait)
			}
			secs := float64(frames) * profiles[k].Interval.Seconds()
			kbps := float64(bytes) * 8 / secs / 1000
			switch k {
			case media.Audio:
				require.InDelta(t, 64, kbps, 1) // 50 × 160 B
			case media.Video:
				require.InDelta(t, 30, 1/profiles[k].Interval.Seconds(), 0.1)
				require.Equal(t, 5, keys)         // every 60 frames
				require.InDelta(t, 756, kbps, 10) // (59 × 3,000 + 12,000) B per 2 s
			case media.Content:
				require.Equal(t, 12, keys)
			}
			s := rx.summary()
			require.Equal(t, 1, s.Sources)
			require.Zero(t, s.Lost, "%+v", s)
			require.Less(t, s.JitterMS, 0.01, "packets timed exactly at the clock have no jitter")
		})
	}
}

func TestRxStatsLoss(t *testing.T) {
	rx := newRxStats(media.Audio)
	g := newGenerator(media.Audio, 1, 100)
	now := time.Unix(0, 0)
	var pkts [][]byte
	for i := range 100 {
		pkts, _, _ = g.next(pkts, now)
		if i%10 != 3 { // drop one in ten
			rx.add(pkts[0], now)
		}
		now = now.Add(20 * time.Millisecond)
	}
	s := rx.summary()
	require.Equal(t, uint64(100), s.Expected)
	require.Equal(t, int64(10), s.Lost)
	require.InDelta(t, 0.1, s.Loss, 1e-9)
}

func TestRTPDumpReplay(t *testing.T) {
	var dump []byte
	for i := range 3 {
		p := make([]byte, 100)
		p[0], p[1] = 0x80, 96
		binary.BigEndian.PutUint16(p[2:], uint16(500+i))
		binary.BigEndian.PutUint32(p[4:], uint32(1000+960*i)) // 20 ms apart at 48 kHz
		binary.BigEndian.PutUint32(p[8:], 0xdead)
		dump = wire.AppendFrame(dump, p)
	}
	path := filepath.Join(t.TempDir(), "a.rtp")
	require.NoError(t, os.WriteFile(path, dump, 0o600))
	src, err := loadRTPDump(path)
	require.NoError(t, err)
	g := newGenerator(media.Audio, 0x55, 7)
	g.src = src
	var pkts [][]byte
	for i := range 4 {
		var wait time.Duration
		pkts, wait, err = g.next(pkts, time.Now())
		require.NoError(t, err)
		require.Len(t, pkts, 1)
		require.Equal(t, uint32(0x55), binary.BigEndian.Uint32(pkts[0][8:]), "SSRC replaced")
		require.Equal(t, uint16(7+i), binary.BigEndian.Uint16(pkts[0][2:]), "renumbered")
		if i < 2 {
			require.Equal(t, 20*time.Millisecond, wait)
		}
	}
	require.NoError(t, os.WriteFile(path, []byte{0, 3, 1, 2, 3}, 0o600))
	_, err = loadRTPDump(path)
	require.ErrorContains(t, err, "not RTP")
}
