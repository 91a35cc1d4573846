package router

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"runtime"
	"time"

	"github.com/openmmr/mmr/dscp"
	"github.com/openmmr/mmr/ingress"
	"github.com/openmmr/mmr/wire"
)

// DefaultPort is the UDP (and, with the fallback transports, TCP) media port
// clients connect to.
const DefaultPort = 8801

// Tuning limits, each explained beside it.
const (
	// DefaultBatch packets per recvmmsg(2): 64 amortises the syscall to a few
	// percent of the per-packet cost while a full batch of 1500-byte buffers
	// (96 KiB) still fits in L2 with room for the fan-out headers.
	DefaultBatch = 64
	// MaxBatch caps Batch at the kernel's UIO_MAXIOV, the most messages one
	// recvmmsg/sendmmsg call accepts.
	MaxBatch = 1024
	// DefaultSocketBuffer bytes of SO_RCVBUF/SO_SNDBUF per socket: 4 MiB holds
	// about 40 ms of a 1 Gbit/s burst, enough to ride out a scheduling hiccup
	// without loss. The kernel may clamp it to net.core.rmem_max unless the
	// process may use SO_RCVBUFFORCE (root, CAP_NET_ADMIN), which is tried first.
	DefaultSocketBuffer = 4 << 20
	// MaxPacket is the largest datagram the router accepts; bigger ones are
	// truncated by the kernel and dropped as DropOversize. 1500 is the
	// Ethernet MTU, above anything a media client sends unfragmented.
	MaxPacket = 1500
	// DefaultIdleTimeout is four keepalive intervals (wire.KeepaliveInterval,
	// 15 s): three lost keepalives in a row never unbind a live client.
	DefaultIdleTimeout = 60 * time.Second
	// DefaultStreamQueue bytes per participant across its TCP/TLS media
	// streams: 256 KiB is about 2 s of 1 Mbit/s video, enough to ride out a
	// congestion episode; beyond it the subscriber is behind for good and
	// frames are dropped.
	DefaultStreamQueue = 256 << 10
	// DefaultStallTimeout: a subscriber that takes nothing for 5 s is gone.
	DefaultStallTimeout = 5 * time.Second
	// DefaultBindTimeout: a stream that does not bind in 5 s holds nothing.
	DefaultBindTimeout = 5 * time.Second
	// DefaultMaxStreamsPerIP: 3 kinds for many participants behind one NAT
	// (a meeting room, an office), while a single host cannot exhaust
	// descriptors.
	DefaultMaxStreamsPerIP = 64
	// DefaultStreamReserve is the share of the process's descriptor limit
	// (RLIMIT_NOFILE) that media streams may not take when MaxStreams is
	// unset: a quarter stays free for the control port's connections, the
	// zone link, the UDP sockets and files, so a flood of TCP media
	// connections cannot lock clients out of joining.
	DefaultStreamReserve = 4
	// fallbackMaxStreams is MaxStreams where the descriptor limit is
	// unknown.
	fallbackMaxStreams = 16384
	// DefaultMaxPacketAge: media that waited this long in a socket buffer
	// (the router stalled: a GC pause, a descheduled thread, a burst) is
	// dropped, not forwarded in a burst. 500 ms is beyond what any jitter
	// buffer waits for (interactive media budgets 150-400 ms one way), so
	// receivers would discard it anyway, and a burst of it only delays
	// the fresh media behind it and fills subscribers' queues.
	DefaultMaxPacketAge = 500 * time.Millisecond
	// DefaultKeyframeInterval lets one keyframe request (PLI, FIR) per
	// published SSRC reach its publisher every 300 ms: a keyframe takes
	// about that long to be encoded and delivered, so further requests in
	// the meantime only make the publisher send more, bigger frames (1,000
	// viewers joining at once would otherwise ask for 1,000 keyframes),
	// while a keyframe that was lost is asked for again soon enough.
	DefaultKeyframeInterval = 300 * time.Millisecond
)

// Config configures a Router. The zero value is valid: every zero field takes
// the default documented beside it. Config is a plain value; the Router keeps
// its own copy.
type Config struct {
	// UDP lists the addresses the UDP media listeners bind. Default:
	// 0.0.0.0:8801 and [::]:8801 (the IPv6 one is skipped with a warning when
	// the host has no IPv6). Port 0 picks an ephemeral port (tests); read the
	// bound addresses from Router.UDPAddrs.
	UDP []netip.AddrPort
	// Shards is the number of sockets (SO_REUSEPORT) and reader threads per
	// address. Default: runtime.NumCPU(), so every core can receive.
	Shards int
	// Batch is the number of datagrams read per recvmmsg(2). Default
	// DefaultBatch; at most MaxBatch.
	Batch int
	// ReadMode selects how readers wait (see ingress.Mode). Default Blocking.
	// In Blocking mode the readers keep their P while they sleep
	// (ingress.Socket.SetHoldP), which halves the cost per packet at light
	// load, whenever the process has a P to spare beside them: when the
	// number of readers (Shards × UDP listeners) is below GOMAXPROCS at New.
	// Otherwise they release it like any system call, and New logs how far
	// to raise GOMAXPROCS (cmd/mmr raises it itself).
	ReadMode ingress.Mode
	// Coalesce is how long a reader lets datagrams gather between reads
	// while they arrive at least twice per Coalesce on its socket (see
	// DefaultCoalesce); below that rate every packet is forwarded as soon
	// as it arrives, and a full read batch is always followed by another
	// read at once. It trades up to Coalesce of added delay for one
	// wake-up per Coalesce instead of one per packet. Default
	// DefaultCoalesce; at most MaxCoalesce; negative: never (every read
	// waits for the next datagram). Applies to both read modes.
	Coalesce time.Duration
	// DSCP is the code point of each media kind; zero Config means
	// dscp.Default() (RFC 8837). To disable marking entirely set
	// DisableDSCP.
	DSCP dscp.Config
	// DisableDSCP sends every packet unmarked.
	DisableDSCP bool
	// DisableGSO sends one datagram per message. By default (Linux 4.18 or
	// later) a reader that finds consecutive RTP packets of one publisher's
	// flow in a read batch (a video frame's packets), all of one size but
	// for a shorter last one, sends each UDP subscriber their copies as one
	// UDP GSO super-packet (UDP_SEGMENT, at most egress.MaxSegments
	// datagrams and egress.MaxRunBytes bytes), with the same DSCP mark and
	// source address; the subscriber receives ordinary datagrams. A
	// destination whose route refuses GSO (no checksum offload, MTU) gets
	// one message per datagram from then on, counted in
	// Stats.GSOFallbacks.
	DisableGSO bool
	// SocketBuffer is SO_RCVBUF/SO_SNDBUF in bytes. Default DefaultSocketBuffer.
	SocketBuffer int
	// IdleTimeout unbinds a client-bound flow that has sent nothing (not even
	// a keepalive) for this long; its client must bind again. Default
	// DefaultIdleTimeout.
	IdleTimeout time.Duration
	// TCP lists the addresses of the TCP media listeners (RFC 4571 framed
	// streams, the fallback when UDP is blocked). Default: the UDP addresses
	// (same IP and port: 8801).
	TCP []netip.AddrPort
	// DisableTCP opens no TCP listener (ServeStream still works for streams
	// accepted elsewhere, such as TLS on the control port).
	DisableTCP bool
	// StreamQueue is the byte budget of one participant's stream (TCP/TLS)
	// send queues. Default DefaultStreamQueue.
	StreamQueue int
	// StallTimeout disconnects a stream subscriber that has not taken a
	// write for this long. Default DefaultStallTimeout.
	StallTimeout time.Duration
	// BindTimeout is how long a new stream may take to send its bind.
	// Default DefaultBindTimeout.
	BindTimeout time.Duration
	// MaxStreamsPerIP caps live TCP media streams from one source address.
	// Default DefaultMaxStreamsPerIP.
	MaxStreamsPerIP int
	// MaxStreams caps the live TCP and TLS media streams of the whole
	// router; more are refused at once (DropStreamsFull). Default: the
	// descriptor limit (RLIMIT_NOFILE soft limit) less a quarter kept in
	// reserve (DefaultStreamReserve).
	MaxStreams int
	// MaxPacketAge drops RTP and RTCP datagrams that the kernel received
	// longer ago than this (its receive timestamp, SO_TIMESTAMPNS) when the
	// reader gets to them, as DropStale; binds and keepalives are always
	// served. Default DefaultMaxPacketAge; negative: never.
	MaxPacketAge time.Duration
	// ConsentTimeout: media stops going to a UDP flow whose client has not
	// proved for this long that it receives at its bound address (a
	// Keepalive echoing a recent consent nonce, RFC 7675); copies are
	// dropped as DropNoConsent until it does again. Default
	// wire.ConsentTimeout (30 s); negative: no consent check (binds are
	// still verified). Nonces change every ConsentTimeout/3.
	ConsentTimeout time.Duration
	// KeyframeInterval is the least time between two keyframe requests
	// (RTCP PLI or FIR, from subscribers or from the router's own stream
	// queues) forwarded to the publisher of one SSRC; requests in between
	// are dropped as DropKeyframeThrottled, with the compound RTCP packet
	// that carried them. Default DefaultKeyframeInterval; negative: no
	// limit.
	KeyframeInterval time.Duration
	// Logger receives lifecycle logs (never per-packet). Default slog.Default().
	Logger *slog.Logger

	// rtcpArena, when positive (tests only), replaces the size of every
	// reader's RTCP arena (rtcpArenaUDP, rtcpArenaStream).
	rtcpArena int
}

// withDefaults returns c with every zero field set to its default and
// validates the result.
func (c Config) withDefaults() (Config, error) {
	if len(c.UDP) == 0 {
		c.UDP = []netip.AddrPort{
			netip.AddrPortFrom(netip.IPv4Unspecified(), DefaultPort),
			netip.AddrPortFrom(netip.IPv6Unspecified(), DefaultPort),
		}
	}
	if c.Shards == 0 {
		c.Shards = runtime.NumCPU()
	}
	if c.Batch == 0 {
		c.Batch = DefaultBatch
	}
	if c.DSCP == (dscp.Config{}) && !c.DisableDSCP {
		c.DSCP = dscp.Default()
	}
	if c.DisableDSCP {
		c.DSCP = dscp.Config{}
	}
	if c.SocketBuffer == 0 {
		c.SocketBuffer = DefaultSocketBuffer
	}
	if len(c.TCP) == 0 && !c.DisableTCP {
		c.TCP = append([]netip.AddrPort(nil), c.UDP...)
	}
	if c.StreamQueue == 0 {
		c.StreamQueue = DefaultStreamQueue
	}
	if c.StallTimeout == 0 {
		c.StallTimeout = DefaultStallTimeout
	}
	if c.BindTimeout == 0 {
		c.BindTimeout = DefaultBindTimeout
	}
	if c.MaxStreamsPerIP == 0 {
		c.MaxStreamsPerIP = DefaultMaxStreamsPerIP
	}
	if c.MaxStreams == 0 {
		c.MaxStreams = fallbackMaxStreams
		if n := descriptorLimit(); n > 0 {
			c.MaxStreams = max(1, n-n/DefaultStreamReserve)
		}
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = DefaultIdleTimeout
	}
	if c.MaxPacketAge == 0 {
		c.MaxPacketAge = DefaultMaxPacketAge
	}
	if c.Coalesce == 0 {
		c.Coalesce = DefaultCoalesce
	}
	if c.ConsentTimeout == 0 {
		c.ConsentTimeout = wire.ConsentTimeout
	}
	if c.KeyframeInterval == 0 {
		c.KeyframeInterval = DefaultKeyframeInterval
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c, c.validate()
}

// nonceEpoch is how long the router's nonces stay the same.
func (c Config) nonceEpoch() time.Duration {
	if c.ConsentTimeout > 0 {
		return c.ConsentTimeout / 3
	}
	return wire.ConsentTimeout / 3
}

func (c Config) validate() error {
	var errs []error
	for _, a := range c.UDP {
		if !a.IsValid() {
			errs = append(errs, fmt.Errorf("router: invalid UDP address %v", a))
		}
	}
	if c.Shards < 1 || c.Shards > 256 {
		errs = append(errs, fmt.Errorf("router: Shards %d out of range 1..256", c.Shards))
	}
	if c.Coalesce > MaxCoalesce {
		errs = append(errs, fmt.Errorf("router: Coalesce %v above MaxCoalesce %v (it adds to every packet's delay)", c.Coalesce, MaxCoalesce))
	}
	if c.Batch < 1 || c.Batch > MaxBatch {
		errs = append(errs, fmt.Errorf("router: Batch %d out of range 1..%d", c.Batch, MaxBatch))
	}
	if c.ReadMode != ingress.Blocking && c.ReadMode != ingress.Poll {
		errs = append(errs, fmt.Errorf("router: unknown ReadMode %d", c.ReadMode))
	}
	if c.SocketBuffer < 64<<10 || c.SocketBuffer > 1<<30 {
		errs = append(errs, fmt.Errorf("router: SocketBuffer %d out of range 64KiB..1GiB", c.SocketBuffer))
	}
	if c.StreamQueue < 4*MaxPacket {
		errs = append(errs, fmt.Errorf("router: StreamQueue %d below %d", c.StreamQueue, 4*MaxPacket))
	}
	if c.StallTimeout <= 0 || c.BindTimeout <= 0 || c.MaxStreamsPerIP < 1 || c.MaxStreams < 1 {
		errs = append(errs, errors.New("router: StallTimeout, BindTimeout, MaxStreamsPerIP and MaxStreams must be positive"))
	}
	if c.IdleTimeout < 10*time.Millisecond {
		errs = append(errs, fmt.Errorf("router: IdleTimeout %v below 10ms", c.IdleTimeout))
	}
	if c.ConsentTimeout > 0 && c.ConsentTimeout < 30*time.Millisecond {
		errs = append(errs, fmt.Errorf("router: ConsentTimeout %v below 30ms", c.ConsentTimeout))
	}
	if err := c.DSCP.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Readers returns the number of UDP reader threads a Router made from cfg
// runs: Shards per UDP listener, defaults applied (an IPv6 wildcard that the
// host cannot open is counted; New skips it). A program that owns its
// process can set GOMAXPROCS above it so the readers keep their P while they
// wait (see Config.ReadMode); cmd/mmr does. It returns 0 for an invalid cfg.
func Readers(cfg Config) int {
	c, err := cfg.withDefaults()
	if err != nil {
		return 0
	}
	return c.Shards * len(c.UDP)
}
