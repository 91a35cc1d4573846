package router

import (
	"bytes"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/openmmr/mmr/media"
	"github.com/openmmr/mmr/wire"
)

// TestStreamPublisherBurstByteExact: a TCP publisher writes hundreds of
// frames of varying sizes in large writes, so the router routes several
// buffered frames into one UDP batch between reads; every UDP subscriber
// gets every packet, byte for byte and in order.
func TestStreamPublisherBurstByteExact(t *testing.T) {
	r := newTestRouter(t, func(c *Config) { c.Shards = 1 })
	require.NoError(t, r.CreateMeeting("m"))
	pub, flows := joinStream(t, r, "m", 1, r.TCPAddrs()[0], nil)
	subs := []*member{join(t, r, "m", 2), join(t, r, "m", 3)}
	v := media.Video.Index()
	const n = 400
	var want [][]byte
	var stream []byte
	for i := range n {
		pkt := pub.rtpPacket(t, media.Video, 100+(i*37)%1300)
		want = append(want, pkt)
		stream = wire.AppendFrame(stream, pkt)
	}
	got := make([][][]byte, len(subs))
	var wg sync.WaitGroup
	for i, s := range subs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got[i] = recvAll(s.flows[v], n, 10*time.Second)
		}()
	}
	conn := flows[v].Conn()
	for off := 0; off < len(stream); off += 20000 { // ~30 frames per write
		_, err := conn.Write(stream[off:min(off+20000, len(stream))])
		require.NoError(t, err)
		time.Sleep(2 * time.Millisecond) // let the subscribers' sockets keep up
	}
	wg.Wait()
	for i := range subs {
		require.Len(t, got[i], n, "subscriber %d", i)
		for j := range want {
			require.True(t, bytes.Equal(want[j], got[i][j]), "subscriber %d packet %d", i, j)
		}
	}
	require.Zero(t, r.Stats().Dropped())
}

// BenchmarkStreamPublisher measures the process CPU time per delivered
// copy of a TCP publisher's packets fanned out to UDP subscribers (client
// side included: it runs in this process). ns/copy compares stream reader
// designs; it is not a forwarding floor (see bench/ for that).
func BenchmarkStreamPublisher(b *testing.B) {
	r := newTestRouter(b, func(c *Config) { c.Shards = 1 })
	require.NoError(b, r.CreateMeeting("m"))
	pub, flows := joinStream(b, r, "m", 1, r.TCPAddrs()[0], nil)
	const nsubs = 10
	var subs []*member
	for i := range nsubs {
		subs = append(subs, join(b, r, "m", 2+i))
	}
	v := media.Video.Index()
	pkt := pub.rtpPacket(b, media.Video, 1000)
	frame := wire.AppendFrame(nil, pkt)
	const perWrite = 16 // frames per TCP write, as a paced video burst
	burst := bytes.Repeat(frame, perWrite)
	var wg sync.WaitGroup
	for _, s := range subs {
		c := s.flows[v].Conn()
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 2048)
			for {
				if _, _, err := c.ReadFromUDPAddrPort(buf); err != nil {
					return
				}
			}
		}()
	}
	conn := flows[v].Conn()
	before := r.Stats().PacketsOut
	var ru0, ru1 syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
	b.ResetTimer()
	b.ReportAllocs()
	for range b.N {
		if _, err := conn.Write(burst); err != nil {
			b.Fatal(err)
		}
	}
	// Wait for the router to drain what it was sent.
	deadline := time.Now().Add(10 * time.Second)
	for r.Stats().PacketsOut-before < uint64(b.N*perWrite*nsubs) && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	b.StopTimer()
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
	copies := r.Stats().PacketsOut - before
	cpu := time.Duration(ru1.Utime.Nano() + ru1.Stime.Nano() - ru0.Utime.Nano() - ru0.Stime.Nano())
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(copies), "ns/copy")
	b.ReportMetric(float64(copies)/float64(b.N*perWrite*nsubs), "delivered")
	for _, s := range subs {
		s.flows[v].Conn().SetReadDeadline(time.Now())
	}
	wg.Wait()
}
