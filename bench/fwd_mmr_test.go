package bench

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"runtime"

	"github.com/openmmr/mmr/ingress"
	"github.com/openmmr/mmr/media"
	"github.com/openmmr/mmr/router"
	"github.com/openmmr/mmr/wire"
)

// benchMeeting is the ID of the measured meeting in the mmr child.
const benchMeeting = "bench"

// Addresses of the idle participants (BenchmarkMeetings): participant g
// (0-based over all idle meetings) is bound at 127.(1+g>>16).(g>>8).(g) with
// port idleBasePort+kind index for each media kind. Nobody sends from them;
// they only fill the router's tables.
const idleBasePort = 20000

// Idle SSRCs: participant g publishes idleSSRCBase+2g (video) and
// idleSSRCBase+2g+1 (audio), far from benchSSRC.
const idleSSRCBase uint32 = 0x20000000

// mmrForwarder runs the router (impls mmr, mmr-poll, mmr-nodscp, tcp, tls)
// with one shard, one meeting, the publisher and the UDP subscribers bound
// to fixed addresses (no bind packets), the publisher publishing benchSSRC
// for video and everyone subscribed to all video. DSCP marking is the
// default (RFC 8837: video AF41) except for mmr-nodscp. For tcp and tls the
// subscribers are participants without addresses, bound later by the
// parent's stream clients with their tokens (see streamServer).
type mmrForwarder struct {
	r      *router.Router
	addr   netip.AddrPort
	tokens []wire.Token   // stream subscribers' media tokens (tcp, tls)
	tls    *tlsMedia      // the TLS media listener (tls)
	ws     *wsMedia       // the web client's WebSocket listener (ws)
	wt     *wtMedia       // the web client's WebTransport server (wt)
	stream netip.AddrPort // where stream subscribers connect (tcp, tls)
}

// localhost0 returns 127.0.0.1:0, an ephemeral loopback port.
func localhost0() netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), 0)
}

func newMMR(spec childSpec, log *slog.Logger) (forwarder, error) {
	mode := ingress.Blocking
	if spec.Impl == implMMRPoll {
		mode = ingress.Poll
	}
	cfg := router.Config{
		UDP:         []netip.AddrPort{localhost0()},
		TCP:         []netip.AddrPort{localhost0()}, // the default (UDP's), spelled out
		Shards:      max(1, spec.Shards),
		ReadMode:    mode,
		DisableDSCP: spec.Impl == implMMRNoDSCP,
		DisableGSO:  spec.Impl == implMMRNoGSO,
		Logger:      log,
	}
	if spec.Impl == implMMRNoCoalesce {
		cfg.Coalesce = -1
	}
	if spec.Impl == implTCP {
		cfg.MaxStreamsPerIP = max(router.DefaultMaxStreamsPerIP, spec.Streams)
	}
	if cfg.Shards > 1 {
		// As cmd/mmr does (raiseGOMAXPROCS): a P per CPU beside the readers,
		// so that they keep theirs while they wait (with one shard on two
		// CPUs they already do).
		runtime.GOMAXPROCS(max(runtime.GOMAXPROCS(0), runtime.NumCPU()+router.Readers(cfg)))
	}
	r, err := router.New(cfg)
	if err != nil {
		return nil, err
	}
	f := &mmrForwarder{r: r, addr: r.UDPAddrs()[0]}
	switch spec.Impl {
	case implTCP:
		f.stream = r.TCPAddrs()[0]
	case implTLS:
		if f.tls, err = newTLSMedia(r, log); err != nil {
			return nil, errors.Join(err, r.Close())
		}
		f.stream = f.tls.addr
	case implWS:
		if f.ws, err = newWSMedia(r, log); err != nil {
			return nil, errors.Join(err, r.Close())
		}
		f.stream = f.ws.addr
	case implWT:
		if f.wt, err = newWTMedia(r, log); err != nil {
			return nil, errors.Join(err, r.Close())
		}
		f.stream = f.wt.addr
	}
	if err := f.setup(spec); err != nil {
		return nil, errors.Join(err, f.Close())
	}
	return f, nil
}

func (f *mmrForwarder) setup(spec childSpec) error {
	if err := f.r.CreateMeeting(benchMeeting); err != nil {
		return err
	}
	var o router.ParticipantOptions
	o.Name = "publisher"
	o.Fixed[media.Video.Index()] = spec.Pub
	pub, err := f.r.AddParticipant(benchMeeting, o)
	if err != nil {
		return fmt.Errorf("bench: adding publisher: %w", err)
	}
	if err := f.r.Publish(pub.ID, media.Video, spec.SSRC); err != nil {
		return fmt.Errorf("bench: publishing: %w", err)
	}
	for i, s := range spec.Subs {
		var o router.ParticipantOptions
		o.Name = fmt.Sprintf("sub%d", i)
		o.Fixed[media.Video.Index()] = s
		p, err := f.r.AddParticipant(benchMeeting, o)
		if err != nil {
			return fmt.Errorf("bench: adding subscriber %v: %w", s, err)
		}
		if err := f.r.Subscribe(p.ID, media.Video, router.All()); err != nil {
			return fmt.Errorf("bench: subscribing %v: %w", s, err)
		}
	}
	for i := range spec.Streams {
		p, err := f.r.AddParticipant(benchMeeting, router.ParticipantOptions{Name: fmt.Sprintf("stream%d", i)})
		if err != nil {
			return fmt.Errorf("bench: adding stream subscriber %d: %w", i, err)
		}
		if err := f.r.Subscribe(p.ID, media.Video, router.All()); err != nil {
			return fmt.Errorf("bench: subscribing stream subscriber %d: %w", i, err)
		}
		f.tokens = append(f.tokens, p.Token)
	}
	if err := f.addMore(spec.More); err != nil {
		return err
	}
	return f.addIdle(spec.IdleMeetings, spec.IdleParticipants)
}

// addIdle creates meetings idle meetings of per participants each, every
// participant with all three kinds bound to fixed addresses and publishing
// one video and one audio SSRC.
func (f *mmrForwarder) addIdle(meetings, per int) error {
	g := 0
	for m := range meetings {
		id := fmt.Sprintf("idle-%d", m)
		if err := f.r.CreateMeeting(id); err != nil {
			return err
		}
		for range per {
			ip := netip.AddrFrom4([4]byte{127, byte(1 + g>>16), byte(g >> 8), byte(g)})
			var o router.ParticipantOptions
			for _, k := range media.Kinds {
				o.Fixed[k.Index()] = netip.AddrPortFrom(ip, uint16(idleBasePort+k.Index()))
			}
			p, err := f.r.AddParticipant(id, o)
			if err != nil {
				return fmt.Errorf("bench: idle participant %d: %w", g, err)
			}
			ssrc := idleSSRCBase + 2*uint32(g)
			if err := errors.Join(f.r.Publish(p.ID, media.Video, ssrc), f.r.Publish(p.ID, media.Audio, ssrc+1)); err != nil {
				return fmt.Errorf("bench: idle participant %d: %w", g, err)
			}
			g++
		}
	}
	return nil
}

// Addr returns the router's UDP address.
func (f *mmrForwarder) Addr() netip.AddrPort { return f.addr }

// Streams returns where the stream subscribers connect, the certificate
// pin (tls) and their tokens.
func (f *mmrForwarder) Streams() streamInfo {
	si := streamInfo{Addr: f.stream, Tokens: f.tokens}
	if f.tls != nil {
		si.Fingerprint = f.tls.fingerprint
	}
	if f.ws != nil {
		si.Fingerprint = f.ws.fingerprint
	}
	if f.wt != nil {
		si.Fingerprint = f.wt.fingerprint
	}
	return si
}

// Drops returns the router's total drop count, every reason.
func (f *mmrForwarder) Drops() uint64 { return f.r.Stats().Dropped() }

// Close closes the TLS listener (tls), then the router, which ends every
// stream it serves, then waits for the TLS listener's goroutines.
// Idempotent.
func (f *mmrForwarder) Close() error {
	var err error
	if f.tls != nil {
		err = f.tls.closeListener()
	}
	if f.ws != nil {
		err = f.ws.closeListener()
	}
	if f.wt != nil {
		err = f.wt.closeListener()
	}
	err = errors.Join(err, f.r.Close())
	if f.tls != nil {
		f.tls.wait()
	}
	if f.ws != nil {
		f.ws.wait()
	}
	if f.wt != nil {
		f.wt.wait()
	}
	return err
}
