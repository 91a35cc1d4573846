package bench

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Timeouts of the control protocol. They only bound a hung child; a healthy
// one answers in microseconds (usage) to about a second (start with 10,000
// idle meetings under the race detector).
const (
	startTimeout   = 60 * time.Second
	controlTimeout = 10 * time.Second
)

// usage is the child's resource counters at one instant.
type usage struct {
	CPUNanos   uint64 // process CPU time, every thread (user + system)
	Mallocs    uint64 // runtime.MemStats.Mallocs
	AllocBytes uint64 // runtime.MemStats.TotalAlloc
}

// add returns u + o, counter by counter.
func (u usage) add(o usage) usage {
	return usage{u.CPUNanos + o.CPUNanos, u.Mallocs + o.Mallocs, u.AllocBytes + o.AllocBytes}
}

// sub returns u - o, counter by counter.
func (u usage) sub(o usage) usage {
	return usage{u.CPUNanos - o.CPUNanos, u.Mallocs - o.Mallocs, u.AllocBytes - o.AllocBytes}
}

// child is the parent's handle on a forwarder child process. Not safe for
// concurrent use; close is idempotent.
type child struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	lines  chan string // reply lines, closed at the child's end of output
	stderr *tailBuffer
	addr   netip.AddrPort

	closeOnce sync.Once
	closeErr  error
}

// startChild re-executes the test binary as a forwarder child running spec
// and returns once the forwarder listens.
func startChild(spec childSpec) (*child, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("bench: finding the test binary: %w", err)
	}
	args := []string{"-test.run=^$"}
	js, err := json.Marshal(spec)
	if err != nil {
		return nil, err
	}
	startLine := "start " + string(js)
	if isCFloor(spec.Impl) { // a C program in place of the test binary
		if exe, err = cfloorBuild(); err != nil {
			return nil, err
		}
		args = cfloorArgs(spec.Impl)
		if startLine, err = cfloorStartLine(spec); err != nil {
			return nil, err
		}
	}
	c := &child{
		cmd:    exec.Command(exe, args...),
		lines:  make(chan string, 1),
		stderr: &tailBuffer{max: 64 << 10},
	}
	// Under -race the child would sleep a second at exit (the race
	// runtime's atexit_sleep_ms default); reports still fail its exit code.
	c.cmd.Env = append(os.Environ(), childEnv+"=1",
		"GORACE="+strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
	c.cmd.Stderr = c.stderr
	if c.stdin, err = c.cmd.StdinPipe(); err != nil {
		return nil, err
	}
	stdout, err := c.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := c.cmd.Start(); err != nil {
		return nil, fmt.Errorf("bench: starting child: %w", err)
	}
	go func() { // ends at the child's end of output (exit or kill)
		defer close(c.lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			c.lines <- sc.Text()
		}
	}()
	reply, err := c.request(startLine, startTimeout)
	if err == nil {
		c.addr, err = netip.ParseAddrPort(strings.TrimPrefix(reply, "ok "))
	}
	if err != nil {
		return nil, errors.Join(err, c.close())
	}
	return c, nil
}

// request sends one line and returns the reply line; an "err" reply, a
// timeout or the child's death is an error carrying the child's stderr.
func (c *child) request(line string, timeout time.Duration) (string, error) {
	if _, err := io.WriteString(c.stdin, line+"\n"); err != nil {
		return "", c.fail(fmt.Errorf("bench: writing to child: %w", err))
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case reply, ok := <-c.lines:
		switch {
		case !ok:
			return "", c.fail(errors.New("bench: child exited"))
		case strings.HasPrefix(reply, "err "):
			return "", c.fail(errors.New("bench: child: " + strings.TrimPrefix(reply, "err ")))
		}
		return reply, nil
	case <-t.C:
		c.kill()
		return "", c.fail(fmt.Errorf("bench: child did not answer %q within %v", strings.SplitN(line, " ", 2)[0], timeout))
	}
}

// fail decorates err with the tail of the child's stderr.
func (c *child) fail(err error) error {
	if tail := c.stderr.String(); tail != "" {
		return fmt.Errorf("%w\nchild stderr:\n%s", err, tail)
	}
	return err
}

// usage reads the child's counters.
func (c *child) usage() (usage, error) {
	reply, err := c.request("usage", controlTimeout)
	if err != nil {
		return usage{}, err
	}
	u, err := parseUsage(reply)
	if err != nil {
		return usage{}, c.fail(err)
	}
	return u, nil
}

// parseUsage parses the child's "usage <cpu ns> <mallocs> <alloc bytes>"
// reply.
func parseUsage(reply string) (usage, error) {
	f := strings.Fields(reply)
	if len(f) != 4 || f[0] != "usage" {
		return usage{}, fmt.Errorf("bench: bad usage reply %q", reply)
	}
	var u usage
	for i, p := range []*uint64{&u.CPUNanos, &u.Mallocs, &u.AllocBytes} {
		v, err := strconv.ParseUint(f[i+1], 10, 64)
		if err != nil {
			return usage{}, fmt.Errorf("bench: bad usage reply %q: %w", reply, err)
		}
		*p = v
	}
	return u, nil
}

// streams reads where the child's stream subscribers connect and their
// tokens (impls tcp and tls).
func (c *child) streams() (streamInfo, error) {
	reply, err := c.request("streams", controlTimeout)
	if err != nil {
		return streamInfo{}, err
	}
	si, err := parseStreams(reply)
	if err != nil {
		return streamInfo{}, c.fail(err)
	}
	return si, nil
}

// drops reads the router's total drop count (router impls).
func (c *child) drops() (uint64, error) {
	reply, err := c.request("drops", controlTimeout)
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseUint(strings.TrimPrefix(reply, "drops "), 10, 64)
	if err != nil || !strings.HasPrefix(reply, "drops ") {
		return 0, c.fail(fmt.Errorf("bench: bad drops reply %q", reply))
	}
	return n, nil
}

// close asks the child to stop its forwarder and exit, kills it if it does
// not within controlTimeout, and reaps it. Idempotent.
func (c *child) close() error {
	c.closeOnce.Do(func() {
		reply, err := c.request("quit", controlTimeout)
		if err == nil && reply != "bye" {
			err = c.fail(fmt.Errorf("bench: unexpected reply %q to quit", reply))
		}
		c.closeErr = err
		_ = c.stdin.Close()
		done := make(chan error, 1)
		go func() {
			for range c.lines { // drain until the reader goroutine ends
			}
			done <- c.cmd.Wait()
		}()
		select {
		case werr := <-done:
			if c.closeErr == nil && werr != nil {
				c.closeErr = c.fail(fmt.Errorf("bench: child: %w", werr))
			}
		case <-time.After(controlTimeout):
			c.kill()
			<-done
			if c.closeErr == nil {
				c.closeErr = c.fail(errors.New("bench: child did not exit; killed"))
			}
		}
	})
	return c.closeErr
}

func (c *child) kill() {
	if c.cmd.Process != nil {
		_ = c.cmd.Process.Kill()
	}
}

// tailBuffer keeps the last max bytes written to it. Safe for concurrent
// use (exec copies the child's stderr into it from its own goroutine).
type tailBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
	max int
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf.Write(p)
	if over := t.buf.Len() - t.max; over > 0 {
		t.buf.Next(over)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.buf.String()
}
