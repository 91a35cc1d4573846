package router

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/openmmr/mmr/media"
)

// BenchmarkWebinar10k joins 10,000 attendees to a webinar with 2 panelists
// (audio and video) through the router API, then ends it, and reports the
// whole join phase, each join's p99 and the end. (Through the control
// channel the control server's roster and events add their own cost.)
func BenchmarkWebinar10k(b *testing.B) {
	const n = 10000
	for range b.N {
		r := newTestRouter(b, func(c *Config) { c.Shards = 1; c.DisableTCP = true })
		require.NoError(b, r.CreateMeeting("w"))
		for i := range 2 {
			p, err := r.AddParticipant("w", ParticipantOptions{Name: fmt.Sprint("panelist", i)})
			require.NoError(b, err)
			require.NoError(b, r.Publish(p.ID, media.Audio, uint32(100+i)))
			require.NoError(b, r.Publish(p.ID, media.Video, uint32(200+i)))
		}
		lat := make([]time.Duration, 0, n)
		start := time.Now()
		for i := range n {
			t0 := time.Now()
			_, err := r.AddParticipant("w", ParticipantOptions{Name: fmt.Sprint("a", i)})
			if err != nil {
				b.Fatal(err)
			}
			lat = append(lat, time.Since(t0))
		}
		total := time.Since(start)
		slices.Sort(lat)
		t0 := time.Now()
		require.NoError(b, r.EndMeeting("w"))
		end := time.Since(t0)
		b.ReportMetric(total.Seconds(), "join-all-s")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "join-p99-µs")
		b.ReportMetric(float64(end.Milliseconds()), "end-ms")
		require.NoError(b, r.Close())
	}
}
