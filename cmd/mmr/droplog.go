package main

import (
	"log/slog"
	"sync"
	"time"

	"github.com/openmmr/mmr/router"
	"github.com/openmmr/mmr/stats"
)

// dropLogInterval: at most one drop line per 10 s, whatever the packet
// rate (a flood of bad datagrams must not become a flood of log lines).
const dropLogInterval = 10 * time.Second

// startDropLog logs one warn line per interval in which the router's drop
// counters grew, with each reason's growth and the interval: drop-reason
// bursts rate-limited, never a line per packet. The counters are read from
// Stats() (the packet path does nothing extra). every <= 0 means
// dropLogInterval. stop ends the goroutine and waits for it; it is
// idempotent.
func startDropLog(r interface{ Stats() router.Stats }, log *slog.Logger, every time.Duration) (stop func()) {
	if every <= 0 {
		every = dropLogInterval
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	last := r.Stats().Drops // before returning: every later drop is logged
	go func() {
		defer wg.Done()
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
			}
			cur := r.Stats().Drops
			var attrs []any
			var total uint64
			for i := range stats.NumDropReasons {
				if d := cur[i] - last[i]; d > 0 {
					attrs = append(attrs, i.String(), d)
					total += d
				}
			}
			last = cur
			if total > 0 {
				log.Warn("mmr: drops", append([]any{"total", total, "interval", every}, attrs...)...)
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			close(done)
			wg.Wait()
		})
	}
}
