package bench

import (
	"runtime"
	"time"

	"golang.org/x/sys/unix"
)

// pace calls send(i) for i in [0, n), one call per interval, from a
// goroutine locked to its OS thread that sleeps until absolute deadlines
// with clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME): the deadlines do not
// drift, and the thread wakes straight from the kernel timer rather than
// through the Go timer wheel. When the thread is woken more than one
// interval late (a busy machine), the schedule restarts from now instead of
// catching up with a burst: light load must stay one packet at a time. It
// returns the first error of send.
func pace(n int, interval time.Duration, send func(i int) error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		var ts unix.Timespec
		if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
			errc <- err
			return
		}
		next := ts.Nano()
		for i := range n {
			ts = unix.NsecToTimespec(next)
			for unix.ClockNanosleep(unix.CLOCK_MONOTONIC, unix.TIMER_ABSTIME, &ts, nil) == unix.EINTR {
			}
			if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err == nil && ts.Nano() > next+int64(interval) {
				next = ts.Nano()
			}
			if err := send(i); err != nil {
				errc <- err
				return
			}
			next += int64(interval)
		}
		errc <- nil
	}()
	return <-errc
}
