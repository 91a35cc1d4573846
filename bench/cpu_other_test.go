//go:build !linux

package bench

import "syscall"

// processCPU returns the CPU time of the whole process (user + system) in
// nanoseconds from getrusage(RUSAGE_SELF): microsecond resolution, enough
// for deltas over thousands of packets.
func processCPU() (uint64, error) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, err
	}
	return uint64(ru.Utime.Nano() + ru.Stime.Nano()), nil
}
