package connect_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/openmmr/mmr/client/connect"
	"github.com/openmmr/mmr/media"
)

// BenchmarkConnect measures, per path, the time from calling Connect to
// media flowing on all three kinds: a packet of every kind received from a
// peer that sends continuously. It reports the median and p99 over the
// iterations (ms); ns/op is the mean and includes leaving.
func BenchmarkConnect(b *testing.B) {
	e := startEnvTB(b)
	peerRx := newReceiver()
	peerCfg := clientConfigTB(b, e, 9, peerRx)
	ctx := context.Background()
	peer, _, err := connect.Connect(ctx, peerCfg)
	require.NoError(b, err)
	defer peer.Close()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // the peer sends a packet of every kind every 5 ms
		defer wg.Done()
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		seq := uint16(0)
		for {
			select {
			case <-stop:
				return
			case <-t.C:
			}
			seq++
			for _, k := range media.Kinds {
				_ = peer.Flow(k).Send(rtp(ssrcFor(9, k), seq, 160))
			}
		}
	}()
	defer func() {
		close(stop)
		wg.Wait()
	}()
	var px *tinyproxy
	for _, path := range []string{"udp", "tcp", "tls", "proxy"} {
		b.Run(path, func(b *testing.B) {
			if path == "proxy" && px == nil {
				px = startTinyproxy(b, "127.0.0.1")
			}
			var took []time.Duration
			for b.Loop() {
				got := make(chan media.Kind, 64)
				cfg := clientConfigTB(b, e, 0, nil)
				seen := map[media.Kind]bool{}
				cfg.OnMedia = func(k media.Kind, _ []byte) {
					select {
					case got <- k:
					default:
					}
				}
				switch path {
				case "tcp":
					cfg.Transport = connect.TCP
				case "tls":
					cfg.Transport = connect.TLS
				case "proxy":
					cfg.Proxy = "http://" + px.addr
				}
				start := time.Now()
				s, res, err := connect.Connect(ctx, cfg)
				require.NoError(b, err, "router: %+v", e.zones[0].Router.Stats())
				for len(seen) < 3 {
					select {
					case k := <-got:
						seen[k] = true
					case <-time.After(10 * time.Second):
						b.Fatalf("no media on every kind within 10 s (%+v)", res.Media)
					}
				}
				took = append(took, time.Since(start))
				want := map[string]string{"udp": connect.UDP, "tcp": connect.TCP, "tls": connect.TLS, "proxy": connect.TLS}[path]
				require.Equal(b, want, s.Flow(media.Video).Transport())
				require.NoError(b, s.Leave(ctx))
			}
			slices.Sort(took)
			b.ReportMetric(float64(took[len(took)/2])/1e6, "median-ms")
			b.ReportMetric(float64(took[(len(took)*99)/100])/1e6, "p99-ms")
		})
	}
}
