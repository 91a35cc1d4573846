package ingress

import (
	"net"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/openmmr/mmr/internal/leaktest"
)

// TestHoldP checks that readers which keep their P while they sleep in
// recvmmsg never hold up the rest of the process: stop-the-world garbage
// collections, goroutines needing a P, and Close all get through while every
// reader waits, including when the readers hold every P but one.
func TestHoldP(t *testing.T) {
	leaktest.Check(t)
	for _, readers := range []int{1, max(1, runtime.GOMAXPROCS(0)-1)} {
		for _, hold := range []bool{true, false} {
			t.Run(map[bool]string{true: "held", false: "released"}[hold]+"/readers="+itoa(readers), func(t *testing.T) {
				socks, err := Listen(netip.MustParseAddrPort("127.0.0.1:0"), readers, Blocking, 1<<20)
				require.NoError(t, err)
				got := make(chan int, 1024)
				done := make(chan struct{})
				for _, s := range socks {
					s.SetHoldP(hold)
					go func() {
						defer func() { done <- struct{}{} }()
						b := NewBatch(8)
						for {
							n, err := s.Read(b)
							if err != nil {
								return
							}
							got <- n
						}
					}()
				}
				time.Sleep(10 * time.Millisecond) // let the readers block (not a synchronisation: any order passes)

				// Stop-the-world collections while every reader sleeps.
				for range 20 {
					runtime.GC()
				}
				// Goroutines still get a P: a burst of short-lived ones.
				fin := make(chan struct{}, 100)
				for range 100 {
					go func() { runtime.Gosched(); fin <- struct{}{} }()
				}
				for range 100 {
					<-fin
				}
				// The readers still receive.
				c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(socks[0].LocalAddr()))
				require.NoError(t, err)
				defer c.Close()
				total := 0
				deadline := time.After(20 * time.Second)
				for total == 0 {
					_, err := c.Write([]byte("hello"))
					require.NoError(t, err)
					select {
					case n := <-got:
						total += n
					case <-time.After(20 * time.Millisecond):
					case <-deadline:
						t.Fatal("no datagram read")
					}
				}
				for _, s := range socks {
					s.Wake()
				}
				for range socks {
					select {
					case <-done:
					case <-time.After(20 * time.Second):
						t.Fatal("a reader did not return after Wake")
					}
				}
				for _, s := range socks {
					require.NoError(t, s.Close())
				}
			})
		}
	}
}

func itoa(n int) string { return netip.AddrFrom4([4]byte{}).String()[:0] + string(rune('0'+n%10)) }
