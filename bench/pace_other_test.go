//go:build !linux

package bench

import "time"

// pace calls send(i) for i in [0, n), one call per interval, sleeping with
// time.Sleep (coarser than the Linux version's clock_nanosleep). Woken more
// than one interval late, it restarts the schedule from now rather than
// sending a burst. It returns the first error of send.
func pace(n int, interval time.Duration, send func(i int) error) error {
	next := time.Now()
	for i := range n {
		time.Sleep(time.Until(next))
		if now := time.Now(); now.Sub(next) > interval {
			next = now
		}
		if err := send(i); err != nil {
			return err
		}
		next = next.Add(interval)
	}
	return nil
}
