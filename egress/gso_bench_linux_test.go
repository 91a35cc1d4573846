package egress

import (
	"net"
	"runtime"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/openmmr/mmr/dscp"
	"github.com/openmmr/mmr/media"
	"github.com/openmmr/mmr/stats"
)

// threadCPU is the calling thread's CPU time in nanoseconds.
func threadCPU() int64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts)
	return ts.Nano()
}

// BenchmarkGSOGather compares the two ways to give the kernel a run's
// datagrams as one contiguous super-packet: iovecs over the separate read
// buffers (what AddRun does: the kernel gathers them while it copies the
// payload into its buffer anyway), and a staging copy of the run into one
// buffer, made once per run and shared by every destination, sent as one
// iovec. Runs of 8 × 1200 bytes go to 10 receivers on loopback, the two
// ways alternating in slices; ns/run is the sending thread's CPU time (the
// system calls and, for staging, the copy) per run and destination set.
func BenchmarkGSOGather(b *testing.B) {
	const dests, segs, size = 10, 8, 1200
	sender, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(b, err)
	defer sender.Close()
	rc, err := sender.SyscallConn()
	require.NoError(b, err)
	var fd int
	require.NoError(b, rc.Control(func(f uintptr) { fd = int(f) }))
	require.NoError(b, unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, 4<<20))
	var wg sync.WaitGroup
	var addrs []*Addr
	var conns []*net.UDPConn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
		wg.Wait()
	}()
	for range dests {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		require.NoError(b, err)
		conns = append(conns, c)
		require.NoError(b, c.SetReadBuffer(4<<20))
		addrs = append(addrs, AddrOf(c.LocalAddr().(*net.UDPAddr).AddrPort()))
		wg.Go(func() {
			buf := make([]byte, 2048)
			for {
				if _, err := c.Read(buf); err != nil {
					return
				}
			}
		})
	}
	var live stats.Live
	batch := NewBatch(fd, false, dscp.Default(), &live)
	require.True(b, batch.EnableGSO())
	bufs := make([]byte, segs*2048) // read buffers, 2 KiB apart as ingress's
	pkts := make([][]byte, segs)
	for i := range pkts {
		pkts[i] = bufs[i*2048 : i*2048+size]
	}
	ss := NewSegs(segs, segs*size)
	for i, p := range pkts {
		ss.Set(i, p)
	}
	send := func(stage bool) {
		ss.Reset()
		run := Run{N: segs, Size: size, Bytes: segs * size}
		if stage {
			ss.Stage(&run) // once per run, for every destination
		}
		for _, a := range addrs {
			batch.AddRun(ss, run, a, media.Video, nil)
		}
		batch.Flush()
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var cpu [2]int64
	var runs [2]int
	b.ResetTimer()
	for done, turn := 0, 0; done < b.N; turn++ {
		k := min(200, b.N-done)
		for j := range 2 {
			v := (turn + j) % 2
			t0 := threadCPU()
			for range k {
				send(v == 1)
			}
			cpu[v] += threadCPU() - t0
			runs[v] += k
		}
		done += k
	}
	b.StopTimer()
	b.ReportMetric(float64(cpu[0])/float64(runs[0]), "iovecs-ns/run")
	b.ReportMetric(float64(cpu[1])/float64(runs[1]), "staging-ns/run")
	b.ReportMetric(float64(cpu[1])/float64(cpu[0])*float64(runs[0])/float64(runs[1]), "staging/iovecs")
	require.Zero(b, live.Snapshot().Dropped())
}
