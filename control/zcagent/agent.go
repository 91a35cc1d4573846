package zcagent

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// Agent registers one MMR with its zone's ZCs. All methods are safe for
// concurrent use.
type Agent struct {
	cfg      Config
	log      *slog.Logger
	smp      sampler // sampler goroutine only (and New)
	snap     atomic.Pointer[snapshot]
	draining atomic.Bool
	update   chan struct{} // cap 1: a report is wanted now
	sessions []*session

	ctx       context.Context
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
}

// New validates cfg, takes a first sample of src and starts registering with
// every ZC in the background: it does not wait for any ZC (an MMR serves its
// meetings whether or not a ZC is reachable). Close stops it.
func New(cfg Config, src LoadSource) (*Agent, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	a := &Agent{
		cfg: cfg, log: cfg.Logger.With("component", "zcagent", "mmr", cfg.ID),
		smp:    sampler{src: src, cpuFn: cfg.CPU},
		update: make(chan struct{}, 1), ctx: ctx, cancel: cancel,
	}
	a.snap.Store(a.smp.sample(time.Now(), true, false))
	for _, addr := range cfg.ZCs {
		s := &session{a: a, addr: addr, notify: make(chan struct{}, 1)}
		s.status.Addr = addr
		a.sessions = append(a.sessions, s)
	}
	a.wg.Add(1 + len(a.sessions))
	go a.sampleLoop()
	for _, s := range a.sessions {
		go s.run()
	}
	return a, nil
}

// Close says Bye to every connected ZC (so they take the MMR out of
// selection at once), closes the connections and waits for every goroutine
// of the Agent. Idempotent; returns nil.
func (a *Agent) Close() error {
	a.closeOnce.Do(func() {
		a.cancel()
		a.wg.Wait()
	})
	return nil
}

// Drain marks the MMR draining: the next report, sent at once, tells every
// ZC to place no new meetings here (existing meetings stay and new
// participants still join them). Idempotent. See WaitDrained.
func (a *Agent) Drain() {
	if !a.draining.Swap(true) {
		a.log.Info("draining: no new meetings will be placed here")
	}
	a.Update()
}

// Draining reports whether Drain was called.
func (a *Agent) Draining() bool { return a.draining.Load() }

// Update asks for a report now instead of at the next interval, e.g. after a
// meeting starts or ends, so the ZCs learn of it sooner. Reports caused by
// Update are at least 50 ms apart. It never blocks.
func (a *Agent) Update() {
	select {
	case a.update <- struct{}{}:
	default:
	}
}

// ZCStatus is the state of the connection to one ZC (a copy).
type ZCStatus struct {
	Addr      string
	ZC        string    // the ZC's ID from its Welcome (empty before the first)
	Connected bool      // registered and reporting
	Since     time.Time // when Connected last changed
	LastError string    // why the last connection attempt or connection failed
	Failures  int       // consecutive failed attempts
}

// Status returns the state of every ZC connection, in Config.ZCs order.
func (a *Agent) Status() []ZCStatus {
	out := make([]ZCStatus, len(a.sessions))
	for i, s := range a.sessions {
		s.mu.Lock()
		out[i] = s.status
		s.mu.Unlock()
	}
	return out
}

// sampleLoop samples the load every interval, and on Update, and hands each
// snapshot to every session.
func (a *Agent) sampleLoop() {
	defer a.wg.Done()
	t := time.NewTicker(a.cfg.Interval)
	defer t.Stop()
	var lastUpdate time.Time
	for {
		select {
		case <-a.ctx.Done():
			return
		case now := <-t.C:
			a.publish(a.smp.sample(now, true, a.draining.Load()))
		case <-a.update:
			if wait := minUpdateGap - time.Since(lastUpdate); wait > 0 {
				select {
				case <-a.ctx.Done():
					return
				case <-time.After(wait):
				}
			}
			lastUpdate = time.Now()
			a.publish(a.smp.sample(lastUpdate, false, a.draining.Load()))
		}
	}
}

func (a *Agent) publish(s *snapshot) {
	a.snap.Store(s)
	for _, ss := range a.sessions {
		select {
		case ss.notify <- struct{}{}:
		default:
		}
	}
}
