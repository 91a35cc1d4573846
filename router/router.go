// Package router is the embeddable Multimedia Router: it receives media on
// UDP 8801 and copies each packet to every subscriber of its meeting, with
// batched syscalls, lock-free lookups and no allocation per packet.
//
// A Router's methods are safe for concurrent use. Control methods (meetings,
// participants, publications, subscriptions) take effect for the next
// packet batch; they never wait for the packet path.
package router

import (
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/openmmr/mmr/ingress"
	"github.com/openmmr/mmr/media"
	"github.com/openmmr/mmr/protect"
	"github.com/openmmr/mmr/session"
	"github.com/openmmr/mmr/stats"
)

var errClosed = errors.New("router: closed")

// bindQueue is the capacity of the queue from the readers to the binder
// goroutine. Binds are rare (a few per participant); 1024 absorbs a meeting
// of hundreds joining at once. Overflow drops the bind (DropBindBusy) and
// the client retransmits.
const bindQueue = 1024

// Fair shares of the bind queue, so that one participant or one host
// flooding binds (authentic ones, signed with its token, from 1,024 ports)
// cannot fill it:
// a bind over its share is dropped (DropBindLimited) and the client's
// retransmission is served later.
const (
	// maxBindsPerParticipant: one bind per kind and a retransmission of
	// each may wait at once.
	maxBindsPerParticipant = 2 * 3
	// maxBindsPerSource: binds from one source (an IPv4 address, an IPv6
	// /64) that may wait at once: a NAT of 20 participants joining at the
	// same moment with 3 kinds each. 1024/64: at least 16 sources always
	// have room.
	maxBindsPerSource = 64
	// bindSourceBuckets: sources are counted in a fixed table of atomic
	// counters indexed by a hash of the source (lock-free, no allocation
	// on the packet path); two sources in one bucket share its 64.
	bindSourceBuckets = 4096
)

// Router routes media among the participants of its meetings.
type Router struct {
	cfg    Config
	log    *slog.Logger
	reg    *session.Registry
	groups []*group
	rds    []*reader
	binds  chan bindReq
	// bindSrc counts the binds waiting per source bucket (sourceBucket).
	bindSrc [bindSourceBuckets]atomic.Int32
	bindr   *binder
	// nonceKey keys the return-routability and consent nonces (prover).
	nonceKey [32]byte
	// challenges counts BindAcks with StatusVerify sent.
	challenges atomic.Uint64
	done       chan struct{}
	wg         sync.WaitGroup
	closed     atomic.Bool
	once       sync.Once

	// Stream (TCP/TLS) media.
	tcp        []net.Listener
	streamLive stats.Live
	streamMu   sync.Mutex
	streams    map[net.Conn]struct{}
	streamWG   sync.WaitGroup
	perIP      perIPLimit
	frames     framePool
	keyframes  chan keyframeReq

	tcpAcceptErrors  atomic.Uint64
	lastTCPAcceptErr atomic.Int64 // Unix nanoseconds; 0: none since the last success
	tcpStopped       atomic.Bool  // a TCP listener was closed under the router
}

// group is the socket group of one listen address.
type group struct {
	addr  netip.AddrPort
	v6    bool
	socks []*ingress.Socket
}

// New validates cfg, binds the UDP listeners and starts forwarding. Close
// the Router to release them.
func New(cfg Config) (*Router, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	r := &Router{
		cfg:   cfg,
		log:   cfg.Logger,
		reg:   session.NewRegistry(),
		binds: make(chan bindReq, bindQueue),
		done:  make(chan struct{}),

		streams:   make(map[net.Conn]struct{}),
		perIP:     perIPLimit{max: cfg.MaxStreamsPerIP},
		keyframes: make(chan keyframeReq, bindQueue),
		frames:    newFramePool(),
	}
	for _, a := range cfg.UDP {
		socks, err := ingress.Listen(a, cfg.Shards, cfg.ReadMode, cfg.SocketBuffer)
		if err != nil {
			if a.Addr().Is6() && a.Addr().IsUnspecified() && len(cfg.UDP) > 1 {
				r.log.Warn("router: IPv6 listener unavailable, continuing without it", "addr", a, "err", err)
				continue
			}
			r.closeSockets()
			return nil, fmt.Errorf("router: listen UDP %v: %w", a, err)
		}
		r.groups = append(r.groups, &group{addr: socks[0].LocalAddr(), v6: socks[0].Is6(), socks: socks})
	}
	if len(r.groups) == 0 {
		return nil, errors.New("router: no UDP listener could be opened")
	}
	readers := 0
	for _, g := range r.groups {
		readers += len(g.socks)
	}
	// hold: readers keep their P while they wait (Blocking) or pause
	// (Coalesce), when the process has a P to spare beside them.
	hold := readers < runtime.GOMAXPROCS(0)
	if cfg.ReadMode == ingress.Blocking && !hold {
		r.log.Info("router: readers release their P while blocked (costlier wake-ups at light load); raise GOMAXPROCS above the reader count to avoid it",
			"readers", readers, "gomaxprocs", runtime.GOMAXPROCS(0))
	}
	if _, err := rand.Read(r.nonceKey[:]); err != nil {
		r.closeSockets()
		return nil, fmt.Errorf("router: nonce key: %w", err)
	}
	for gi, g := range r.groups {
		for si, s := range g.socks {
			s.SetHoldP(hold)
			rd := newReader(r, gi, si, s)
			for _, o := range rd.out {
				// Raw, never-blocking sends: the reader's thread holds its P,
				// or (Poll) an ordinary system call would wake the runtime's
				// sysmon from the deep sleep it enters while every P is idle,
				// at every packet at light load.
				o.SetHoldP(hold || cfg.ReadMode == ingress.Poll)
			}
			r.rds = append(r.rds, rd)
		}
	}
	for _, a := range cfg.TCP {
		ln, err := listenTCP(a)
		if err != nil {
			if a.Addr().Is6() && a.Addr().IsUnspecified() && len(cfg.TCP) > 1 {
				r.log.Warn("router: IPv6 TCP listener unavailable, continuing without it", "addr", a, "err", err)
				continue
			}
			r.closeSockets()
			return nil, err
		}
		r.tcp = append(r.tcp, ln)
	}
	r.bindr = newBinder(r)
	for _, rd := range r.rds {
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			rd.run()
		}()
	}
	r.wg.Add(2)
	go func() {
		defer r.wg.Done()
		r.bindr.run()
	}()
	go func() {
		defer r.wg.Done()
		r.expireIdle()
	}()
	for _, ln := range r.tcp {
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			r.serveTCP(ln)
		}()
	}
	for _, g := range r.groups {
		r.log.Info("router: listening", "udp", g.addr, "shards", len(g.socks), "mode", cfg.ReadMode, "hold_p", hold, "gso", len(r.rds) > 0 && r.rds[0].segs != nil)
	}
	for _, ln := range r.tcp {
		r.log.Info("router: listening", "tcp", ln.Addr())
	}
	return r, nil
}

// expireIdle unbinds idle client flows, checking four times per IdleTimeout
// so a flow is unbound at most 1.25 × IdleTimeout after its last packet.
func (r *Router) expireIdle() {
	t := time.NewTicker(r.cfg.IdleTimeout / 4)
	defer t.Stop()
	for {
		select {
		case <-r.done:
			return
		case now := <-t.C:
			if n := r.reg.Expire(now.Add(-r.cfg.IdleTimeout).UnixNano()); n > 0 {
				r.log.Debug("router: unbound idle flows", "flows", n)
			}
		}
	}
}

// sendFD returns the descriptor reader number i sends group g's packets
// from: a socket of that group, spread over readers.
func (r *Router) sendFD(g, i int) int {
	socks := r.groups[g].socks
	return socks[i%len(socks)].FD()
}

// groupFor picks the listener group that serves a fixed remote address: the
// first one of the same IP family.
func (r *Router) groupFor(ap netip.AddrPort) int {
	v6 := ap.Addr().Is6() && !ap.Addr().Is4In6()
	for i, g := range r.groups {
		if g.v6 == v6 {
			return i
		}
	}
	return 0
}

// Close stops forwarding, waits for every goroutine of the Router to end
// and closes its sockets. It is idempotent; later control calls return
// ErrClosed.
func (r *Router) Close() error {
	r.once.Do(func() {
		r.closed.Store(true)
		for _, g := range r.groups {
			for _, s := range g.socks {
				s.Wake()
			}
		}
		for _, ln := range r.tcp {
			ln.Close()
		}
		r.closeStreams()
		close(r.done)
		r.wg.Wait()
		r.closeSockets()
		r.log.Info("router: closed")
	})
	return nil
}

func (r *Router) closeSockets() {
	for _, ln := range r.tcp {
		ln.Close()
	}
	for _, g := range r.groups {
		for _, s := range g.socks {
			s.Close()
		}
	}
}

// UDPAddrs returns the addresses the UDP listeners are bound to.
func (r *Router) UDPAddrs() []netip.AddrPort {
	out := make([]netip.AddrPort, len(r.groups))
	for i, g := range r.groups {
		out[i] = g.addr
	}
	return out
}

// TCPAddrs returns the addresses the TCP media listeners are bound to.
func (r *Router) TCPAddrs() []netip.AddrPort {
	out := make([]netip.AddrPort, len(r.tcp))
	for i, ln := range r.tcp {
		out[i] = addrPortOf(ln.Addr())
	}
	return out
}

// CreateMeeting adds an empty meeting with the given ID.
func (r *Router) CreateMeeting(id string) error {
	if r.closed.Load() {
		return ErrClosed
	}
	return r.reg.CreateMeeting(id)
}

// EndMeeting removes a meeting and every participant in it.
func (r *Router) EndMeeting(id string) error {
	if r.closed.Load() {
		return ErrClosed
	}
	return r.reg.EndMeeting(id)
}

// AddParticipant adds a participant to a meeting. It receives every other
// participant's streams until Subscribe narrows that, and publishes nothing
// until Publish.
func (r *Router) AddParticipant(meeting string, o ParticipantOptions) (ParticipantInfo, error) {
	if r.closed.Load() {
		return ParticipantInfo{}, ErrClosed
	}
	fixed := o.Fixed
	if o.RTCPSecret != nil {
		// The flows get their RTCP protection before any address can
		// reach them: fixed addresses are bound after it.
		fixed = [media.NumKinds]netip.AddrPort{}
	}
	p, err := r.reg.Add(meeting, o.Name, fixed, r.groupFor)
	if err != nil {
		return ParticipantInfo{}, err
	}
	if o.RTCPSecret != nil {
		err := setRTCP(p, o.RTCPSecret)
		if err == nil && fixed != o.Fixed {
			err = r.reg.BindFixed(p, o.Fixed, r.groupFor)
		}
		if err != nil {
			_ = r.reg.Remove(p.ID)
			return ParticipantInfo{}, err
		}
	}
	return ParticipantInfo{ID: ParticipantID(p.ID), Token: p.Token}, nil
}

// SetRTCPSecret replaces a participant's RTCP secret (see
// ParticipantOptions.RTCPSecret; nil: plain RTCP from now on), e.g. with the
// fresh one a resume hands its client. Every flow of the participant
// switches at once, with new SRTCP contexts (indexes and replay windows
// start over): RTCP in flight under the old secret is dropped as rtcp_auth.
// Errors: ErrNoParticipant, ErrClosed.
func (r *Router) SetRTCPSecret(id ParticipantID, secret *[32]byte) error {
	if r.closed.Load() {
		return ErrClosed
	}
	p, ok := r.reg.Get(uint64(id))
	if !ok {
		return ErrNoParticipant
	}
	return setRTCP(p, secret)
}

// setRTCP installs the router side of p's SRTCP contexts, one per flow,
// derived from secret (nil: none, plain RTCP), with the default replay
// window (protect.DefaultReplayWindow).
func setRTCP(p *session.Participant, secret *[32]byte) error {
	var ctx [media.NumKinds]*protect.RTCPFlow
	if secret != nil {
		for i, k := range media.Kinds {
			c, err := protect.NewRTCPFlow(secret[:], p.ID, k, protect.RouterSide, 0)
			if err != nil {
				return fmt.Errorf("router: RTCP keys: %w", err)
			}
			ctx[i] = c
		}
	}
	for i, f := range p.Flows {
		f.SetRTCP(ctx[i])
	}
	return nil
}

// RemoveParticipant takes a participant out of its meeting; its flows stop
// at once.
func (r *Router) RemoveParticipant(id ParticipantID) error {
	if r.closed.Load() {
		return ErrClosed
	}
	return r.reg.Remove(uint64(id))
}

// Publish declares SSRCs a participant sends for media kind k. RTP with an
// undeclared SSRC is dropped (DropUnknownSSRC).
func (r *Router) Publish(id ParticipantID, k media.Kind, ssrcs ...uint32) error {
	if r.closed.Load() {
		return ErrClosed
	}
	return r.reg.Publish(uint64(id), k, ssrcs...)
}

// Unpublish withdraws SSRCs of kind k.
func (r *Router) Unpublish(id ParticipantID, k media.Kind, ssrcs ...uint32) error {
	if r.closed.Load() {
		return ErrClosed
	}
	return r.reg.Unpublish(uint64(id), k, ssrcs...)
}

// Subscribe sets which publishers' streams of kind k the participant receives.
func (r *Router) Subscribe(id ParticipantID, k media.Kind, f Filter) error {
	if r.closed.Load() {
		return ErrClosed
	}
	return r.reg.Subscribe(uint64(id), k, f)
}

// Bound returns the remote address a participant's flow of kind k is bound to.
func (r *Router) Bound(id ParticipantID, k media.Kind) (netip.AddrPort, bool) {
	p, ok := r.reg.Get(uint64(id))
	if !ok || !k.Valid() {
		return netip.AddrPort{}, false
	}
	rem := p.Flow(k).Remote()
	if rem == nil {
		return netip.AddrPort{}, false
	}
	return rem.Dst.AP, true
}

// Stats returns router-wide counters.
func (r *Router) Stats() Stats {
	var s Stats
	for _, rd := range r.rds {
		s.Add(rd.live.Snapshot())
	}
	s.Add(r.bindr.live.Snapshot())
	s.Add(r.streamLive.Snapshot())
	s.Meetings, s.Participants = r.reg.Counts()
	s.Streams, s.MaxStreams = r.liveStreams(), r.cfg.MaxStreams
	s.TCPAcceptErrors, s.TCPAccepting = r.tcpAcceptErrors.Load(), r.tcpAccepting()
	s.BindChallenges = r.challenges.Load()
	if !r.closed.Load() {
		for _, g := range r.groups {
			for _, so := range g.socks {
				s.KernelDrops += so.KernelDrops()
			}
		}
	}
	return s
}

// MeetingStats returns the counters of one meeting: the sum over its
// present and past participants.
func (r *Router) MeetingStats(id string) (stats.Counters, error) {
	return r.reg.MeetingStats(id)
}

// ParticipantStats returns one participant's counters: packets in are
// those it sent and the router accepted, packets out the copies sent to it.
func (r *Router) ParticipantStats(id ParticipantID) (stats.Counters, error) {
	p, ok := r.reg.Get(uint64(id))
	if !ok {
		return stats.Counters{}, ErrNoParticipant
	}
	return p.Stats.Snapshot(), nil
}

// Voice is one participant's audio activity over an interval: how many of
// its audio packets carried the audio-level header extension (RFC 6464,
// ID wire.AudioLevelExtID) and their mean loudness, 0 (silence) to 127.
type Voice = session.Voice

// TakeVoice appends to dst the audio activity of each participant of the
// meeting since the previous call and starts a new interval; participants
// that sent no audio level are left out. The packet path only adds to a
// per-participant atomic counter; this call does the rest. It is meant for
// one caller (an active-speaker detector, e.g. the control server's)
// polling every few hundred milliseconds. Safe for concurrent use.
func (r *Router) TakeVoice(meeting string, dst []Voice) ([]Voice, error) {
	return r.reg.TakeVoice(meeting, dst)
}

// MeetingInfo is one hosted meeting's ID and number of participants.
type MeetingInfo = session.MeetingInfo

// Meetings lists the hosted meetings (for load reports to zone controllers).
func (r *Router) Meetings() []MeetingInfo { return r.reg.Meetings() }
