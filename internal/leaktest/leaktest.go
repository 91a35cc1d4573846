// Package leaktest checks that a test leaves no goroutine (and, where
// /proc/self/fd exists, no file descriptor) behind. It is shared by every
// package's tests.
package leaktest

import (
	"os"
	"runtime"
	"time"
)

// Settle is how long Check waits for goroutines and descriptors to wind
// down after the test before it reports a leak.
const Settle = 3 * time.Second

// T is the part of testing.TB that Check needs.
type T interface {
	Helper()
	Cleanup(func())
	Fatalf(format string, args ...any)
}

// Check records the goroutines and descriptors open now and registers a
// cleanup that fails t if more remain once the test and its later-registered
// cleanups have finished (cleanups run last-in first-out, so call Check
// first). The failure message carries every goroutine's stack.
func Check(t T) {
	t.Helper()
	g0, fd0 := runtime.NumGoroutine(), OpenFDs()
	t.Cleanup(func() {
		deadline := time.Now().Add(Settle)
		for (runtime.NumGoroutine() > g0 || OpenFDs() > fd0) && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if g := runtime.NumGoroutine(); g > g0 {
			buf := make([]byte, 1<<20)
			t.Fatalf("goroutine leak: %d before, %d after\n%s", g0, g, buf[:runtime.Stack(buf, true)])
		}
		if fd := OpenFDs(); fd > fd0 {
			t.Fatalf("descriptor leak: %d before, %d after", fd0, fd)
		}
	})
}

// OpenFDs counts the process's open descriptors, or -1 where /proc/self/fd
// does not exist (the descriptor check is then skipped).
func OpenFDs() int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return -1
	}
	return len(ents)
}
