package bench

import "golang.org/x/sys/unix"

// processCPU returns the CPU time of the whole process (every thread, user
// and system, including the Go runtime and GC) in nanoseconds, from
// clock_gettime(CLOCK_PROCESS_CPUTIME_ID).
func processCPU() (uint64, error) {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_PROCESS_CPUTIME_ID, &ts); err != nil {
		return 0, err
	}
	return uint64(ts.Nano()), nil
}
