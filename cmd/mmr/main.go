// Command mmr runs a Multimedia Router: media on UDP and TCP 8801, the
// control channel, TLS media and an in-process zone controller on TLS 443.
//
//	go run ./cmd/mmr            # defaults: a one-MMR zone on this machine
//	go run ./cmd/mmr -h         # every flag
//	go run ./cmd/mmr token -h   # mint a join token (control channel)
//
// SIGINT/SIGTERM stop it; SIGUSR1 drains it (no new meetings; it exits when
// the last meeting ends or after -drain-timeout).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/openmmr/mmr/control/zcagent"
	"github.com/openmmr/mmr/dscp"
	"github.com/openmmr/mmr/ingress"
	"github.com/openmmr/mmr/internal/logflag"
	"github.com/openmmr/mmr/internal/onebox"
	"github.com/openmmr/mmr/router"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "token" {
		os.Exit(tokenMain(os.Args[2:]))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	drain := make(chan os.Signal, 1)
	signal.Notify(drain, syscall.SIGUSR1)
	os.Exit(run(ctx, os.Args[1:], os.Stderr, drain, nil))
}

// options are the parsed flags.
type options struct {
	cfg            router.Config
	log            *logflag.Flags
	control        string
	controlSet     bool // -control given: no fallback to controlFallback
	state          string
	joinSecretFile string
	zoneSecretFile string
	zcs            []string
	public         netip.Addr
	id             string
	drainTimeout   time.Duration
	metrics        string
	perMeeting     bool // -metrics-per-meeting
	pprof          bool // -pprof
	web            bool
	webTransport   bool
	webDB          string
	webConfig      string
}

// defaultState is where a router keeps its certificate and secrets.
func defaultState() string { return onebox.DefaultState() }

func parseFlags(args []string, out io.Writer) (*options, error) {
	fs := flag.NewFlagSet("mmr", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.Usage = func() {
		fmt.Fprintf(out, "Usage: mmr [flags]\n       mmr token [flags]   (mint a control-channel join token)\n\nRuns an openmmr Multimedia Router. Flags:\n")
		fs.PrintDefaults()
	}
	def := dscp.Default()
	udp := fs.String("udp", "0.0.0.0:8801,[::]:8801", "comma-separated UDP media listen addresses (port 0: ephemeral)")
	tcp := fs.String("tcp", "", "comma-separated TCP media listen addresses (default: the -udp addresses; \"off\": none)")
	control := fs.String("control", ":443", "TLS address of the control channel, TLS media and the in-process zone controller")
	state := fs.String("state", defaultState(), "directory for the TLS certificate and the secrets (created on first start)")
	joinSecret := fs.String("join-secret-file", "", "join-token secret file (default STATE/join.secret, created if missing; `mmr token` signs with it)")
	zoneSecret := fs.String("zone-secret-file", "", "zone secret file shared with the zone's ZCs (default STATE/zone.secret, created if missing)")
	zcs := fs.String("zc", "", "comma-separated zone controller addresses (host:port); empty: run a one-MMR zone with a ZC in process")
	public := fs.String("public", "", "IP address clients reach this MMR on, announced to the zone (default: the listen addresses, loopback for wildcards)")
	id := fs.String("id", "", "this MMR's ID in its zone (default: the host name)")
	drainTimeout := fs.Duration("drain-timeout", 10*time.Minute, "after SIGUSR1 (drain), exit when the last meeting ends or after this long")
	shards := fs.Int("shards", 0, "sockets and reader threads per UDP address (0: one per CPU)")
	batch := fs.Int("batch", router.DefaultBatch, "datagrams per recvmmsg call (1..1024)")
	mode := fs.String("read-mode", "blocking", "how readers wait: blocking (locked OS thread) or poll (Go netpoller)")
	coalesce := fs.Duration("coalesce", router.DefaultCoalesce, "while a UDP socket receives at least two packets per this interval, its reader lets them gather this long between reads (one wake-up for several; adds up to this much delay); negative: off")
	audio := fs.Uint("dscp-audio", uint(def.Audio), "DSCP of audio packets (0..63; Zoom uses 56)")
	video := fs.Uint("dscp-video", uint(def.Video), "DSCP of video packets (0..63; Zoom uses 40)")
	content := fs.Uint("dscp-content", uint(def.Content), "DSCP of content (screen share) packets (0..63; Zoom uses 40)")
	noDSCP := fs.Bool("no-dscp", false, "send every packet unmarked")
	sockbuf := fs.Int("sockbuf", router.DefaultSocketBuffer, "SO_RCVBUF/SO_SNDBUF bytes per socket")
	keyframe := fs.Duration("keyframe-interval", router.DefaultKeyframeInterval, "least time between keyframe requests (PLI, FIR) forwarded to the publisher of one stream (negative: no limit)")
	metricsAddr := fs.String("metrics", "", "serve Prometheus metrics at http://ADDR/metrics and listener health at /health, e.g. 127.0.0.1:9801 (empty: off; keep it off public networks)")
	perMeeting := fs.Bool("metrics-per-meeting", false, "with -metrics: also per-meeting gauges (mmr_meeting_*; one series per meeting, so off by default)")
	pprofOn := fs.Bool("pprof", false, "with -metrics: serve net/http/pprof under /debug/pprof/ on the metrics listener")
	webOn := fs.Bool("web", true, "serve the web tier (meetings API, lookup) on the -control TLS port: ALPN h2/http/1.1 and HTTP without ALPN")
	webTransport := fs.Bool("webtransport", true, "with -web: serve the web client's media over WebTransport (HTTP/3) on UDP at the -control port's number; the page falls back to WebSockets when UDP is blocked")
	webDB := fs.String("web-db", "", "web tier store: sqlite:PATH or postgres://... (default sqlite:STATE/web.db)")
	webConfig := fs.String("web-config", "", "TOML configuration file for the web tier ([web], [[zones]]; config/example.toml); default: one zone, this node's ZC")
	lf := logflag.Add(fs)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q (see -h)", fs.Arg(0))
	}
	o := &options{control: *control, controlSet: flagSet(fs, "control"), state: *state, joinSecretFile: *joinSecret, zoneSecretFile: *zoneSecret, id: *id, drainTimeout: *drainTimeout, metrics: *metricsAddr,
		web: *webOn, webTransport: *webTransport, webDB: *webDB, webConfig: *webConfig, perMeeting: *perMeeting, pprof: *pprofOn, log: lf}
	if o.metrics == "" && (o.perMeeting || o.pprof) {
		return nil, errors.New("-metrics-per-meeting and -pprof need -metrics (they are served on its listener)")
	}
	var err error
	if o.cfg.UDP, err = parseAddrs(*udp); err != nil {
		return nil, fmt.Errorf("-udp: %w", err)
	}
	switch *tcp {
	case "":
	case "off":
		o.cfg.DisableTCP = true
	default:
		if o.cfg.TCP, err = parseAddrs(*tcp); err != nil {
			return nil, fmt.Errorf("-tcp: %w", err)
		}
	}
	if o.joinSecretFile == "" {
		o.joinSecretFile = filepath.Join(o.state, "join.secret")
	}
	if o.zoneSecretFile == "" {
		o.zoneSecretFile = filepath.Join(o.state, "zone.secret")
	}
	for _, z := range strings.Split(*zcs, ",") {
		if z = strings.TrimSpace(z); z != "" {
			o.zcs = append(o.zcs, z)
		}
	}
	if *public != "" {
		if o.public, err = netip.ParseAddr(*public); err != nil {
			return nil, fmt.Errorf("-public: %w", err)
		}
	}
	m, err := ingress.ParseMode(*mode)
	if err != nil {
		return nil, fmt.Errorf("-read-mode: %w", err)
	}
	for _, v := range []uint{*audio, *video, *content} {
		if v > 63 {
			return nil, fmt.Errorf("DSCP %d out of range 0..63", v)
		}
	}
	o.cfg.Shards, o.cfg.Batch, o.cfg.ReadMode, o.cfg.SocketBuffer = *shards, *batch, m, *sockbuf
	o.cfg.KeyframeInterval = *keyframe
	o.cfg.Coalesce = *coalesce // router.New checks the range
	o.cfg.DSCP = dscp.Config{Audio: uint8(*audio), Video: uint8(*video), Content: uint8(*content)}
	o.cfg.DisableDSCP = *noDSCP || o.cfg.DSCP == (dscp.Config{})
	return o, nil
}

func parseAddrs(list string) ([]netip.AddrPort, error) {
	var out []netip.AddrPort
	for _, s := range strings.Split(list, ",") {
		ap, err := netip.ParseAddrPort(strings.TrimSpace(s))
		if err != nil {
			return nil, err
		}
		out = append(out, ap)
	}
	return out, nil
}

// run starts an MMR and blocks until ctx ends, or until a drain (a value
// on drain) has completed. started, when not nil, receives the running
// node (tests).
func run(ctx context.Context, args []string, stderr io.Writer, drain <-chan os.Signal, started chan<- *node) int {
	o, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "mmr:", err)
		return 2
	}
	log := o.log.New(stderr)
	n, err := start(o, log)
	if err != nil {
		log.Error("mmr: cannot start", "err", err)
		return 1
	}
	defer func() {
		log.Info("mmr: stopping")
		n.close()
	}()
	if started != nil {
		started <- n
	}
	select {
	case <-ctx.Done():
	case <-drain:
		// Stop taking new meetings; exit when the last one ends, or at the
		// deadline.
		log.Info("mmr: draining", "deadline", o.drainTimeout)
		n.agent.Drain()
		dctx, cancel := context.WithTimeout(ctx, o.drainTimeout)
		defer cancel()
		if err := zcagent.WaitDrained(dctx, zcagent.LoadFunc(n.load), time.Now().Add(o.drainTimeout)); err != nil {
			log.Warn("mmr: drain deadline reached with meetings left", "err", err)
		} else {
			log.Info("mmr: drained")
		}
	}
	return 0
}

// flagSet reports whether the flag name was given on the command line.
func flagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}
