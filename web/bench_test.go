package web

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/openmmr/mmr/web/store/storetest"
)

// BenchmarkLookup measures POST /v1/lookup over real HTTPS (TLS 1.3,
// HTTP/1.1 keep-alive, one connection per client goroutine, 8 goroutines
// per GOMAXPROCS) against each store: a meeting with a passcode (the
// verification cache hit after the first), Geo-IP off, three zones. It
// reports lookups/s and the p50/p99 latency seen by the clients. Clients
// and server share the process: with -cpu 1 they share one core.
//
//	go test -run XXX -bench BenchmarkLookup -cpu 1 ./web/
func BenchmarkLookup(b *testing.B) {
	for _, db := range []string{"sqlite", "postgres"} {
		b.Run("store="+db, func(b *testing.B) {
			dsn := ""
			if db == "postgres" {
				dsn = storetest.PostgresDSN(b)
			}
			site := testSite()
			site.Zones = testZones(b)
			site.Web.Limits.LookupRate = 1e9
			site.Web.Limits.LookupBurst = 1 << 30
			e := newEnv(b, dsn, site)
			m := e.createMeeting(b, map[string]any{"passcode": "123456", "topic": "bench"})
			body := []byte(`{"meeting_id":"` + m.ID + `","passcode":"123456","name":"Bench","capabilities":["udp","tcp","tls"]}`)
			tr := e.ts.Client().Transport.(*http.Transport).Clone()
			tr.ForceAttemptHTTP2 = false
			tr.TLSClientConfig.NextProtos = []string{"http/1.1"}
			tr.MaxIdleConnsPerHost = 1024
			defer tr.CloseIdleConnections()
			c := &http.Client{Transport: tr}
			one := func() error {
				resp, err := c.Post(e.ts.URL+"/v1/lookup", "application/json", bytes.NewReader(body))
				if err != nil {
					return err
				}
				msg, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					return fmt.Errorf("lookup: %s: %s", resp.Status, msg)
				}
				return nil
			}
			require.NoError(b, one()) // warm: argon2id once, connections
			var mu sync.Mutex
			var lat []time.Duration
			b.SetParallelism(8)
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				var mine []time.Duration
				for pb.Next() {
					t0 := time.Now()
					if err := one(); err != nil {
						b.Error(err)
						return
					}
					mine = append(mine, time.Since(t0))
				}
				mu.Lock()
				lat = append(lat, mine...)
				mu.Unlock()
			})
			el := time.Since(start)
			b.StopTimer()
			if len(lat) == 0 {
				return
			}
			slices.Sort(lat)
			b.ReportMetric(float64(len(lat))/el.Seconds(), "lookups/s")
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-us")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-us")
		})
	}
}
