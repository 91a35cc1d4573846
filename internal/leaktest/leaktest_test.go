package leaktest

import (
	"fmt"
	"os"
	"testing"

	"github.com/stretchr/testify/require"
)

// recorder is a T that runs cleanups on demand and records failures.
type recorder struct {
	cleanups []func()
	failed   string
}

func (r *recorder) Helper()                   {}
func (r *recorder) Cleanup(f func())          { r.cleanups = append(r.cleanups, f) }
func (r *recorder) Fatalf(f string, a ...any) { r.failed = fmt.Sprintf(f, a...) }
func (r *recorder) finish() {
	for i := len(r.cleanups) - 1; i >= 0; i-- {
		r.cleanups[i]()
	}
}

func TestCheck(t *testing.T) {
	t.Run("clean", func(t *testing.T) {
		r := &recorder{}
		Check(r)
		done := make(chan struct{})
		go func() { <-done }()
		close(done)
		r.finish()
		require.Empty(t, r.failed)
	})
	t.Run("goroutine leak", func(t *testing.T) {
		r := &recorder{}
		Check(r)
		stop := make(chan struct{})
		go func() { <-stop }()
		r.finish()
		close(stop)
		require.Contains(t, r.failed, "goroutine leak")
	})
	t.Run("leak hidden by an exit", func(t *testing.T) {
		// A goroutine older than Check exits while a new one leaks: the
		// count stays the same, the leak must still be reported.
		old, stop := make(chan struct{}), make(chan struct{})
		oldDone := make(chan struct{})
		go func() { <-old; close(oldDone) }()
		r := &recorder{}
		Check(r)
		go func() { <-stop }()
		close(old)
		<-oldDone
		r.finish()
		close(stop)
		require.Contains(t, r.failed, "goroutine leak")
	})
	t.Run("descriptor leak", func(t *testing.T) {
		if OpenFDs() < 0 {
			t.Skip("no /proc/self/fd")
		}
		r := &recorder{}
		Check(r)
		f, err := os.Open(os.DevNull)
		require.NoError(t, err)
		r.finish()
		f.Close()
		require.Contains(t, r.failed, "descriptor leak")
	})
}
