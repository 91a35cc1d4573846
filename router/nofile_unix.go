//go:build unix

package router

import "syscall"

// descriptorLimit returns the soft RLIMIT_NOFILE, or 0 if unknown.
func descriptorLimit() int {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil || rl.Cur > 1<<30 {
		return 0
	}
	return int(rl.Cur)
}
