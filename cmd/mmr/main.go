// Command mmr runs a Multimedia Router: UDP media on port 8801 by default.
//
//	go run ./cmd/mmr            # defaults: UDP 0.0.0.0:8801 and [::]:8801
//	go run ./cmd/mmr -h         # every flag
//	go run ./cmd/mmr token -h   # mint a join token (control channel)
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/openmmr/mmr/dscp"
	"github.com/openmmr/mmr/ingress"
	"github.com/openmmr/mmr/router"
)

// subcommands maps `mmr NAME ...` to its entry point.
var subcommands = map[string]func(args []string) int{}

func main() {
	if len(os.Args) > 1 {
		if sub, ok := subcommands[os.Args[1]]; ok {
			os.Exit(sub(os.Args[2:]))
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stderr, nil))
}

// options are the parsed flags.
type options struct {
	cfg      router.Config
	logLevel slog.Level
}

func parseFlags(args []string, out io.Writer) (*options, error) {
	fs := flag.NewFlagSet("mmr", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.Usage = func() {
		fmt.Fprintf(out, "Usage: mmr [flags]\n       mmr token [flags]   (mint a control-channel join token)\n\nRuns an openmmr Multimedia Router. Flags:\n")
		fs.PrintDefaults()
	}
	def := dscp.Default()
	udp := fs.String("udp", "0.0.0.0:8801,[::]:8801", "comma-separated UDP media listen addresses (port 0: ephemeral)")
	shards := fs.Int("shards", 0, "sockets and reader threads per UDP address (0: one per CPU)")
	batch := fs.Int("batch", router.DefaultBatch, "datagrams per recvmmsg call (1..1024)")
	mode := fs.String("read-mode", "blocking", "how readers wait: blocking (locked OS thread) or poll (Go netpoller)")
	audio := fs.Uint("dscp-audio", uint(def.Audio), "DSCP of audio packets (0..63; Zoom uses 56)")
	video := fs.Uint("dscp-video", uint(def.Video), "DSCP of video packets (0..63; Zoom uses 40)")
	content := fs.Uint("dscp-content", uint(def.Content), "DSCP of content (screen share) packets (0..63; Zoom uses 40)")
	noDSCP := fs.Bool("no-dscp", false, "send every packet unmarked")
	sockbuf := fs.Int("sockbuf", router.DefaultSocketBuffer, "SO_RCVBUF/SO_SNDBUF bytes per socket")
	level := fs.String("log-level", "info", "debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q (see -h)", fs.Arg(0))
	}
	o := &options{}
	for _, s := range strings.Split(*udp, ",") {
		ap, err := netip.ParseAddrPort(strings.TrimSpace(s))
		if err != nil {
			return nil, fmt.Errorf("-udp: %w", err)
		}
		o.cfg.UDP = append(o.cfg.UDP, ap)
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
	o.cfg.DSCP = dscp.Config{Audio: uint8(*audio), Video: uint8(*video), Content: uint8(*content)}
	o.cfg.DisableDSCP = *noDSCP || o.cfg.DSCP == (dscp.Config{})
	if err := o.logLevel.UnmarshalText([]byte(*level)); err != nil {
		return nil, fmt.Errorf("-log-level: %w", err)
	}
	return o, nil
}

// run starts the router and blocks until ctx ends. started, when not nil,
// receives the running router (tests).
func run(ctx context.Context, args []string, stderr io.Writer, started chan<- *router.Router) int {
	o, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "mmr:", err)
		return 2
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: o.logLevel}))
	o.cfg.Logger = log
	r, err := router.New(o.cfg)
	if err != nil {
		log.Error("mmr: cannot start", "err", err, "hint", "pick other addresses with -udp")
		return 1
	}
	log.Info("mmr: running", "udp", r.UDPAddrs(), "dscp", o.cfg.DSCP)
	if started != nil {
		started <- r
	}
	<-ctx.Done()
	log.Info("mmr: stopping")
	r.Close()
	return 0
}
