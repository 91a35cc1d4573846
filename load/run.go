// Package load drives many real participants against an openmmr zone and
// reports what they received: N meetings × M participants, of which the
// first P of each meeting publish each kind at the synthetic rates of
// `openmmr join`, in the conference or webinar shape, joined at a paced
// rate either through the whole connection process (client/connect:
// lookup, zone, MMR, control channel, media binds UDP → TCP → TLS) or
// straight to one MMR's control channel.
//
// Media of every UDP kind runs on the load tool's own batched engine (a
// few goroutines over epoll, recvmmsg and sendmmsg, udp_linux.go), so one
// process drives thousands of participants; TCP and TLS kinds stay on the
// connection process's streams. Senders stamp the send time into every
// payload; receivers compute one-way delay (kernel receive timestamps),
// RFC 3550 jitter, loss against what the publishers sent in the
// measurement window, duplicates and reordering, per kind. The Report
// (JSON) adds join times per phase, the router's counters and CPU read from
// its /metrics, and the load tool's own CPU and kernel drops: when it, not
// the router, is the bottleneck, the report says so.
package load

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/time/rate"

	"github.com/openmmr/mmr/client/connect"
	"github.com/openmmr/mmr/client/control"
	"github.com/openmmr/mmr/client/secure"
	ctlproto "github.com/openmmr/mmr/control/proto"
	"github.com/openmmr/mmr/control/token"
	"github.com/openmmr/mmr/media"
	"github.com/openmmr/mmr/stats"
	"github.com/openmmr/mmr/wire"
)

// Progress is a live snapshot for displays.
type Progress struct {
	Phase                    string // "joining", "measuring", "draining", "leaving", "done"
	Expected, Joined, Failed int
	Joining                  int
	RxPPS, TxPPS             float64 // packets per second since the last snapshot
	Loss                     float64 // in-window loss so far (in-flight packets count as lost)
	Elapsed                  time.Duration
	WindowLeft               time.Duration
}

type participant struct {
	idx, mi, pos int
	meeting      string
	viewer       bool
	eps          [media.NumKinds]*endpoint
	pubs         [media.NumKinds]*pubStream
	id           uint64
	role         string
	sess         *connect.Session
	ctl          *control.Client
	sec          atomic.Pointer[secure.State] // media protection, set once joined
	phases       map[string]time.Duration
	errPhase     string
	err          error
	joined       bool
}

// flowRejected is what the connection process's flow of kind k dropped
// because it did not open (stream transports, and a UDP kind before its
// handover to the engine).
func (p *participant) flowRejected(k media.Kind) uint64 {
	if p.sess == nil {
		return 0
	}
	if f := p.sess.Flow(k); f != nil {
		return f.Stats().Rejected
	}
	return 0
}

// runner is one Run.
type runner struct {
	cfg       Config
	eng       *udpEngine
	win       window
	streamAgg agg
	senders   []*sender
	swg       sync.WaitGroup
	parts     []*participant
	joined    atomic.Int64
	failed    atomic.Int64
	joining   atomic.Int64
	phase     atomic.Value
	nextSend  atomic.Int64
	started   time.Time
	heldMu    sync.Mutex
	held      []*pubStream // HoldMedia: started after the joins
}

// Run runs the load and returns its report. ctx ends the measurement
// early (the report covers what ran); joins still in progress are
// cancelled. The error is for what prevents a report at all.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if !available {
		return nil, errors.New("load: the batched UDP engine needs Linux")
	}
	r := &runner{cfg: cfg, started: time.Now()}
	r.streamAgg.win = &r.win
	r.phase.Store("joining")
	n := cfg.Meetings * cfg.Participants
	if r.eng, err = newUDPEngine(cfg.Readers, n*len(cfg.Kinds), &r.win); err != nil {
		return nil, err
	}
	defer r.eng.close()
	for range cfg.Senders {
		s := newSender(r.eng, &r.win)
		r.senders = append(r.senders, s)
		r.swg.Add(1)
		go s.run(&r.swg)
	}
	stopSenders := sync.OnceFunc(func() {
		for _, s := range r.senders {
			close(s.stop)
		}
		r.swg.Wait()
	})
	defer stopSenders()

	// Plan: meeting-major order, the first Publishers[k] of each publish k.
	for mi := range cfg.Meetings {
		for pos := range cfg.Participants {
			p := &participant{idx: len(r.parts), mi: mi, pos: pos, meeting: cfg.MeetingIDs[mi], phases: map[string]time.Duration{}}
			pub := false
			for _, np := range cfg.Publishers {
				pub = pub || pos < np
			}
			p.viewer = cfg.Shape == Webinar && !pub
			for _, k := range cfg.Kinds {
				p.eps[k.Index()] = newEndpoint(p, k, &r.streamAgg)
			}
			r.parts = append(r.parts, p)
		}
	}

	progressDone := make(chan struct{})
	progressStop := make(chan struct{})
	go r.progressLoop(progressStop, progressDone)
	defer func() {
		select {
		case <-progressStop:
		default:
			close(progressStop)
		}
		<-progressDone
	}()
	kaStop := make(chan struct{})
	var kaWG sync.WaitGroup
	kaWG.Add(1)
	go r.keepalives(kaStop, &kaWG)
	defer func() {
		close(kaStop)
		kaWG.Wait()
	}()

	// Joins, paced.
	lim := rate.NewLimiter(rate.Limit(cfg.JoinRate), 1)
	sem := make(chan struct{}, cfg.JoinConcurrency)
	var jwg sync.WaitGroup
	for _, p := range r.parts {
		if err := lim.Wait(ctx); err != nil {
			break
		}
		sem <- struct{}{}
		jwg.Add(1)
		r.joining.Add(1)
		go func() {
			defer jwg.Done()
			defer func() { <-sem }()
			defer r.joining.Add(-1)
			jctx, cancel := context.WithTimeout(ctx, cfg.JoinTimeout)
			defer cancel()
			r.join(jctx, p)
		}()
	}
	jwg.Wait()
	for _, st := range r.held {
		st.due = st.due.Add(time.Since(st.due).Truncate(st.gen.p.Interval) + st.gen.p.Interval)
		r.startStream(st)
	}

	// Subscribers per stream, then the window.
	members := map[int][]*participant{}
	for _, p := range r.parts {
		if p.joined {
			members[p.mi] = append(members[p.mi], p)
		}
	}
	for _, p := range r.parts {
		for k, st := range p.pubs {
			if st == nil {
				continue
			}
			subs := 0
			for _, q := range members[p.mi] {
				if q != p && q.eps[k] != nil {
					subs++
				}
			}
			st.subs.Store(int64(subs))
		}
	}
	rep := &Report{}
	before := r.sample()
	t0 := time.Now().Add(cfg.Warmup)
	if ctx.Err() != nil {
		t0 = time.Now()
	}
	t1 := t0.Add(cfg.Duration)
	r.win.t1.Store(t1.UnixNano())
	r.win.t0.Store(t0.UnixNano())
	r.phase.Store("measuring")
	select {
	case <-ctx.Done():
		if now := time.Now(); now.Before(t1) {
			t1 = now
			if t1.Before(t0) {
				t1 = t0
			}
			r.win.t1.Store(t1.UnixNano())
		}
	case <-time.After(time.Until(t1)):
	}
	stopSenders()
	r.phase.Store("draining")
	r.drain()
	after := r.sample()
	r.report(rep, t0, t1, before, after)
	if cfg.Drained != nil {
		cfg.Drained(rep)
	}
	r.phase.Store("leaving")
	r.leaveAll()
	r.phase.Store("done")
	return rep, nil
}

// srcIP is participant i's local address ("" zero: the kernel's choice).
func (r *runner) srcIP(i int) netip.Addr {
	if len(r.cfg.SourceIPs) == 0 {
		return netip.Addr{}
	}
	return r.cfg.SourceIPs[i%len(r.cfg.SourceIPs)]
}

// ssrcOf is participant i's SSRC for kind k: unique in the run, never 0.
func ssrcOf(i int, k media.Kind) uint32 { return uint32(i+1)<<2 | uint32(k.Index()) }

func (r *runner) publishes(p *participant, k media.Kind) bool {
	return p.eps[k.Index()] != nil && p.pos < r.cfg.Publishers[k.Index()]
}

func (r *runner) join(ctx context.Context, p *participant) {
	start := time.Now()
	var err error
	if r.cfg.Direct != nil {
		err = r.joinDirect(ctx, p)
	} else {
		err = r.joinConnect(ctx, p)
	}
	p.phases["total"] = time.Since(start)
	if err != nil {
		p.err = err
		r.failed.Add(1)
		r.cfg.Logger.Warn("load: join failed", "participant", p.idx, "meeting", p.meeting, "phase", p.errPhase, "err", err)
		if p.sess != nil {
			_ = p.sess.Close()
		}
		if p.ctl != nil {
			_ = p.ctl.Close()
		}
		return
	}
	p.joined = true
	r.joined.Add(1)
	trs := make([]string, 0, len(r.cfg.Kinds))
	for _, k := range r.cfg.Kinds {
		trs = append(trs, k.String()+"="+p.eps[k.Index()].transport)
	}
	r.cfg.Logger.Info("load: joined", "participant", p.idx, "meeting", p.meeting, "id", p.id, "role", p.role, "took", p.phases["total"], "media", trs)
	for _, k := range r.cfg.Kinds {
		if !r.publishes(p, k) {
			continue
		}
		st := &pubStream{ep: p.eps[k.Index()], gen: newGenerator(k, ssrcOf(p.idx, k), uint16(p.idx*7919))}
		// A random phase within the interval: publishers do not send in lockstep.
		st.due = time.Now().Add(time.Duration(uint64(p.idx*104729+int(k)*7) % uint64(st.gen.p.Interval)))
		p.pubs[k.Index()] = st
		if r.cfg.HoldMedia {
			r.heldMu.Lock()
			r.held = append(r.held, st)
			r.heldMu.Unlock()
			continue
		}
		r.startStream(st)
	}
}

func (r *runner) startStream(st *pubStream) {
	s := r.senders[int(r.nextSend.Add(1)-1)%len(r.senders)]
	select {
	case s.add <- st:
	case <-s.stop:
	}
}

func (r *runner) joinDirect(ctx context.Context, p *participant) error {
	d := r.cfg.Direct
	src := r.srcIP(p.idx)
	dialer := &net.Dialer{}
	if src.IsValid() {
		dialer.LocalAddr = &net.TCPAddr{IP: src.AsSlice()}
	}
	role, roleName := token.Participant, "participant"
	if p.viewer {
		role, roleName = token.Viewer, "viewer"
	}
	start := time.Now()
	p.errPhase = connect.PhaseControl
	ctl, err := control.Dial(ctx, d.Control, control.Config{TLS: d.TLS, Dial: dialer.DialContext, Logger: r.cfg.Logger})
	if err != nil {
		return err
	}
	p.ctl = ctl
	name := fmt.Sprintf("load-%d", p.idx)
	tok, err := token.Mint(d.JoinSecret, token.Claims{Meeting: p.meeting, Identity: name, Role: role, Expiry: time.Now().Add(24 * time.Hour)})
	if err != nil {
		return err
	}
	j, err := ctl.Join(ctx, p.meeting, tok, name)
	if err != nil {
		return err
	}
	p.id, p.role = j.Participant, roleName
	p.sec.Store(ctl.Media())
	if j.Role != "" {
		p.role = j.Role
	}
	p.phases[connect.PhaseControl] = time.Since(start)
	mt, err := ctl.MediaToken()
	if err != nil {
		return err
	}
	p.errPhase = connect.PhaseMedia
	start = time.Now()
	for _, k := range r.cfg.Kinds {
		var addr netip.AddrPort
		for _, e := range j.Endpoints {
			if media.Kind(e.Kind) == k && e.Transport == ctlproto.TransportUDP {
				addr = e.Addr
				break
			}
		}
		if !addr.IsValid() {
			return fmt.Errorf("no UDP endpoint for %s", k)
		}
		if err := r.openUDP(ctx, p, k, addr, mt); err != nil {
			return err
		}
	}
	p.phases[connect.PhaseMedia] = time.Since(start)
	p.errPhase = connect.PhaseControl
	for _, k := range r.cfg.Kinds {
		if r.publishes(p, k) && !p.viewer {
			if err := ctl.Publish(ctx, k, ssrcOf(p.idx, k)); err != nil {
				return fmt.Errorf("publish %s: %w", k, err)
			}
		}
	}
	for _, k := range r.cfg.Kinds {
		if err := ctl.Subscribe(ctx, k); err != nil {
			return fmt.Errorf("subscribe %s: %w", k, err)
		}
	}
	p.errPhase = ""
	return nil
}

func (r *runner) openUDP(ctx context.Context, p *participant, k media.Kind, addr netip.AddrPort, tok wire.Token) error {
	ep := p.eps[k.Index()]
	if err := r.eng.open(ep, r.srcIP(p.idx), addr); err != nil {
		return err
	}
	if err := r.eng.bind(ctx, ep, tok); err != nil {
		return err
	}
	ep.transport = connect.UDP
	return nil
}

func (r *runner) joinConnect(ctx context.Context, p *participant) error {
	cc := *r.cfg.Connect
	cc.MeetingID = p.meeting
	cc.Name = fmt.Sprintf("load-%d", p.idx)
	cc.Kinds = r.cfg.Kinds
	if r.cfg.Transport != "" {
		cc.Transport = r.cfg.Transport
	}
	cc.SSRCs = map[media.Kind][]uint32{}
	for _, k := range r.cfg.Kinds {
		if r.publishes(p, k) {
			cc.SSRCs[k] = []uint32{ssrcOf(p.idx, k)}
		}
	}
	// UDP kinds move to the engine's sockets after the join: the
	// connection process's own keepalives (which would bind its socket
	// again) and UDP retries are parked; stream kinds keep them.
	if cc.Transport == "" || cc.Transport == connect.UDP {
		cc.Keepalive, cc.UDPRetry = 24*time.Hour, 24*time.Hour
	} else if cc.Keepalive == 0 {
		cc.Keepalive = r.cfg.Keepalive
	}
	if cc.Logger == nil {
		cc.Logger = r.cfg.Logger
	}
	cc.OnMedia = func(k media.Kind, pkt []byte) {
		if k.Valid() {
			if ep := p.eps[k.Index()]; ep != nil {
				ep.onStream(&r.streamAgg, pkt)
			}
		}
	}
	sess, res, err := connect.Connect(ctx, cc)
	p.phases[connect.PhaseLookup] = res.Lookup.Took
	p.phases[connect.PhaseZone] = res.ZoneTook
	p.phases[connect.PhaseMMR] = res.MMR.Took
	p.phases[connect.PhaseControl] = res.Control.Took
	var mediaTook time.Duration
	for _, m := range res.Media {
		var t time.Duration
		for _, a := range m.Attempts {
			t += a.Took
		}
		mediaTook = max(mediaTook, t)
		if len(m.Attempts) > 1 || (m.Transport != "" && m.Transport != m.Order[0]) {
			r.cfg.Logger.Info("load: transport fallback", "participant", p.idx, "kind", m.Kind, "transport", m.Transport, "attempts", len(m.Attempts), "why", m.Why)
		}
	}
	p.phases[connect.PhaseMedia] = mediaTook
	if err != nil {
		var ce *connect.Error
		if errors.As(err, &ce) {
			p.errPhase = ce.Phase
		}
		return err
	}
	p.sess = sess
	p.sec.Store(sess.Media())
	p.id, p.role = res.Control.Participant, res.Control.Role
	mt, err := wire.ParseToken(sess.Joined().MediaToken)
	if err != nil {
		return err
	}
	start := time.Now()
	for _, k := range r.cfg.Kinds {
		ep := p.eps[k.Index()]
		f := sess.Flow(k)
		ep.transport = f.Transport()
		if ep.transport != connect.UDP {
			ep.flow.Store(f)
			continue
		}
		var addr netip.AddrPort
		for _, m := range res.Media {
			if m.Kind == k.String() {
				addr, _ = netip.ParseAddrPort(m.Addr)
			}
		}
		if err := r.openUDP(ctx, p, k, addr, mt); err != nil {
			p.errPhase = "handover"
			return err
		}
	}
	p.phases["handover"] = time.Since(start)
	p.errPhase = ""
	return nil
}

// keepalives keeps every engine socket's binding.
func (r *runner) keepalives(stop chan struct{}, wg *sync.WaitGroup) {
	defer wg.Done()
	t := time.NewTicker(r.cfg.Keepalive)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		for i := range r.eng.nslot.Load() {
			if ep := r.eng.slots[i].Load(); ep != nil && ep.isBound() {
				r.eng.keepalive(ep)
			}
		}
	}
}

// rxTotal is every RTP packet received so far.
func (r *runner) rxTotal() uint64 {
	var n uint64
	for _, a := range append(r.eng.aggs(), &r.streamAgg) {
		for k := range a.rxLive {
			n += a.rxLive[k].Load()
		}
	}
	return n
}

// drainQuiet: by default the drain ends when nothing arrived for this long.
const drainQuiet = 300 * time.Millisecond

func (r *runner) drain() {
	deadline := time.Now().Add(r.cfg.Drain)
	last, lastChange := r.rxTotal(), time.Now()
	for time.Now().Before(deadline) && time.Since(lastChange) < r.cfg.DrainQuiet {
		time.Sleep(20 * time.Millisecond) // polling interval of the drain
		if n := r.rxTotal(); n != last {
			last, lastChange = n, time.Now()
		}
	}
}

func (r *runner) leaveAll() {
	sem := make(chan struct{}, 64)
	var wg sync.WaitGroup
	for _, p := range r.parts {
		if !p.joined {
			continue
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if p.sess != nil {
				_ = p.sess.Leave(ctx)
			}
			if p.ctl != nil {
				_ = p.ctl.Leave(ctx)
				_ = p.ctl.Close()
			}
		}()
	}
	wg.Wait()
	r.cfg.Logger.Info("load: left", "participants", r.joined.Load())
}

func (r *runner) progressLoop(stop, done chan struct{}) {
	defer close(done)
	t := time.NewTicker(r.cfg.ProgressInterval)
	defer t.Stop()
	lastRx, lastTx, lastT := uint64(0), uint64(0), time.Now()
	var lastOvfl, lastBusy uint64
	lastDropLog := time.Time{}
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		now := time.Now()
		rx := r.rxTotal()
		var tx, exp uint64
		for _, s := range r.senders {
			tx += s.txLive.Load()
			exp += s.expLive.Load()
		}
		var win uint64
		for _, a := range append(r.eng.aggs(), &r.streamAgg) {
			win += a.winLive.Load()
		}
		dt := now.Sub(lastT).Seconds()
		pr := Progress{Phase: r.phase.Load().(string), Expected: len(r.parts), Joined: int(r.joined.Load()), Failed: int(r.failed.Load()),
			Joining: int(r.joining.Load()), RxPPS: float64(rx-lastRx) / dt, TxPPS: float64(tx-lastTx) / dt, Elapsed: now.Sub(r.started)}
		if exp > 0 && win <= exp {
			pr.Loss = 1 - float64(win)/float64(exp)
		}
		if t1 := r.win.t1.Load(); t1 != 0 {
			pr.WindowLeft = max(0, time.Until(time.Unix(0, t1)))
		}
		lastRx, lastTx, lastT = rx, tx, now
		// Drop bursts: one line at most every 5 s.
		ovfl, busy := r.kernelDrops(), r.eng.sentStats().Drops[stats.DropSendBusy]
		if (ovfl > lastOvfl || busy > lastBusy) && now.Sub(lastDropLog) >= 5*time.Second {
			r.cfg.Logger.Warn("load: drops", "receive_queue_overflow", ovfl-lastOvfl, "send_busy", busy-lastBusy)
			lastOvfl, lastBusy, lastDropLog = ovfl, busy, now
		}
		if r.cfg.Progress != nil {
			r.cfg.Progress(pr)
		}
	}
}

// kernelDrops sums SO_RXQ_OVFL over the engine's sockets.
func (r *runner) kernelDrops() uint64 {
	var n uint64
	for i := range r.eng.nslot.Load() {
		if ep := r.eng.slots[i].Load(); ep != nil {
			n += uint64(ep.ovfl.Load())
		}
	}
	return n
}

// sample is a point-in-time reading for the report's deltas.
type sample struct {
	at      time.Time
	cpu     time.Duration // this process, user + system
	rcvbuf  uint64        // the host's UDP RcvbufErrors (/proc/net/snmp)
	metrics map[string]float64
	err     error
}

func (r *runner) sample() sample {
	s := sample{at: time.Now(), cpu: processCPU(), rcvbuf: udpRcvbufErrors()}
	if r.cfg.MetricsURL != "" {
		s.metrics, s.err = Scrape(r.cfg.MetricsURL)
	}
	return s
}

// udpRcvbufErrors reads the host's count of UDP datagrams dropped at full
// receive buffers (Linux /proc/net/snmp; 0 elsewhere): the router's
// sockets overflowing show up here and nowhere in its own counters.
func udpRcvbufErrors() uint64 {
	b, err := os.ReadFile("/proc/net/snmp")
	if err != nil {
		return 0
	}
	var names []string
	for _, l := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(l, "Udp: ") {
			continue
		}
		f := strings.Fields(l)[1:]
		if names == nil {
			names = f
			continue
		}
		for i, n := range names {
			if n == "RcvbufErrors" && i < len(f) {
				v, _ := strconv.ParseUint(f[i], 10, 64)
				return v
			}
		}
	}
	return 0
}

func processCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}
