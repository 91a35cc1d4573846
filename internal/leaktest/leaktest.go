// Package leaktest checks that a test leaves no goroutine (and, where
// /proc/self/fd exists, no file descriptor) behind. It is shared by every
// package's tests.
package leaktest

import (
	"bytes"
	"os"
	"runtime"
	"strconv"
	"strings"
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

// ignored are goroutines the runtime and standard library start lazily and
// keep for the life of the process; they are not a test's leak.
var ignored = []string{
	"os/signal.signal_recv",
	"os/signal.loop",
	"runtime.ensureSigM",
}

// Check records the goroutines and descriptors present now and registers a
// cleanup that fails t if a goroutine started since is still alive, or more
// descriptors are open, once the test and its later-registered cleanups have
// finished (cleanups run last-in first-out, so call Check first).
// Goroutines are compared by ID, not by count, so one that exits
// concurrently cannot hide one that leaks. The failure message carries the
// leaked goroutines' stacks.
func Check(t T) {
	t.Helper()
	before := goroutines()
	fd0 := OpenFDs()
	t.Cleanup(func() {
		deadline := time.Now().Add(Settle)
		var leaked []string
		for {
			leaked = leaked[:0]
			for id, stack := range goroutines() {
				if _, ok := before[id]; !ok && !isIgnored(stack) {
					leaked = append(leaked, stack)
				}
			}
			if (len(leaked) == 0 && OpenFDs() <= fd0) || !time.Now().Before(deadline) {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		if len(leaked) > 0 {
			t.Fatalf("goroutine leak: %d started during the test still running\n%s",
				len(leaked), strings.Join(leaked, "\n\n"))
		}
		if fd := OpenFDs(); fd > fd0 {
			t.Fatalf("descriptor leak: %d before, %d after", fd0, fd)
		}
	})
}

// goroutines returns every live goroutine's stack keyed by goroutine ID.
func goroutines() map[uint64]string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	out := make(map[uint64]string)
	for _, g := range bytes.Split(buf, []byte("\n\n")) {
		// Each record starts "goroutine 123 [state]:".
		rest, ok := bytes.CutPrefix(g, []byte("goroutine "))
		if !ok {
			continue
		}
		idStr, _, ok := bytes.Cut(rest, []byte(" "))
		if !ok {
			continue
		}
		id, err := strconv.ParseUint(string(idStr), 10, 64)
		if err != nil {
			continue
		}
		out[id] = string(g)
	}
	return out
}

func isIgnored(stack string) bool {
	for _, s := range ignored {
		if strings.Contains(stack, s) {
			return true
		}
	}
	return false
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
