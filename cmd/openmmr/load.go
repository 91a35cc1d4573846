package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
	"golang.org/x/term"

	"github.com/openmmr/mmr/client/connect"
	"github.com/openmmr/mmr/internal/logflag"
	"github.com/openmmr/mmr/load"
	"github.com/openmmr/mmr/media"
	"github.com/openmmr/mmr/tlsutil"
)

// loadUsage is the load command's synopsis.
const loadUsage = `Usage: openmmr load [flags]

Drives N meetings × M participants against a zone and reports what they
received (package load). Through the web tier (the whole connection
process):

  openmmr load -web https://127.0.0.1:8443 -pin FP -meeting-ids 1234567890,... -participants 5

or straight to one MMR, signing join tokens with its secret:

  openmmr load -direct 127.0.0.1:8443 -pin FP -join-secret-file STATE/join.secret -meetings 100 -participants 5

Exit status: 0 when loss and join failures are within -max-loss and
-max-join-failures, 1 when they are not (or the run failed), 2 for bad usage.
Flags:
`

type loadOptions struct {
	cfg             load.Config
	jsonFile        string
	plotFile        string
	maxLoss         float64
	maxJoinFailures int
	progress        string
	log             *slog.Logger
}

func parseLoad(args []string, stderr io.Writer) (*loadOptions, error) {
	fs := flag.NewFlagSet("openmmr load", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, loadUsage)
		fs.PrintDefaults()
	}
	o := &loadOptions{}
	c := &o.cfg
	web := fs.String("web", "", "the web tier's URL: every participant walks the whole connection process")
	direct := fs.String("direct", "", "an MMR's control address (host:port): join straight to it (needs -join-secret-file)")
	pin := fs.String("pin", "", "SHA-256 fingerprint of the web tier's (with -web) or the MMR's (with -direct) certificate")
	secretFile := fs.String("join-secret-file", "", "the MMR's join-token secret file (cmd/mmr: STATE/join.secret), for -direct")
	fs.IntVar(&c.Meetings, "meetings", 1, "meetings")
	fs.IntVar(&c.Participants, "participants", 5, "participants per meeting")
	fs.StringVar(&c.Shape, "shape", load.Conference, "conference (everyone may publish) or webinar (publishers + viewers)")
	ids := fs.String("meeting-ids", "", "comma-separated meeting IDs (default load-0001...; through the web tier they must exist)")
	passcode := fs.String("passcode", "", "the meetings' passcode (with -web)")
	pubs := map[media.Kind]*int{}
	for _, k := range media.Kinds {
		pubs[k] = fs.Int(k.String()+"-publishers", -1, "participants per meeting publishing "+k.String()+" (default: conference audio all and video 2, webinar 1 audio + 1 video, content 0)")
	}
	fs.StringVar(&c.Transport, "transport", "", "force the media transport: udp, tcp or tls (default: the client's order, UDP first)")
	srcIPs := fs.String("source-ips", "", "local addresses to spread participants over, comma-separated or a prefix (e.g. 127.0.1.0/26): the MMR limits control connections per address")
	fs.Float64Var(&c.JoinRate, "join-rate", load.DefaultJoinRate, "joins per second")
	fs.IntVar(&c.JoinConcurrency, "join-concurrency", load.DefaultJoinConcurrency, "joins in progress at once")
	fs.DurationVar(&c.Duration, "duration", 30*time.Second, "the measurement window, after every join and the warm-up")
	fs.DurationVar(&c.Warmup, "warmup", load.DefaultWarmup, "pause between the last join and the window")
	fs.DurationVar(&c.Drain, "drain", load.DefaultDrain, "longest wait for packets in flight after the window")
	fs.DurationVar(&c.DrainQuiet, "drain-quiet", 300*time.Millisecond, "the drain ends once nothing arrived for this long")
	fs.BoolVar(&c.HoldMedia, "hold-media", false, "publishers start when every join is done (default: as soon as each joined)")
	fs.StringVar(&c.MetricsURL, "metrics", "", "the router's /metrics URL (e.g. http://127.0.0.1:9801/metrics): its counters and CPU go into the report")
	fs.StringVar(&o.jsonFile, "json", "", "write the report as JSON to this file (- for stdout)")
	fs.StringVar(&o.plotFile, "plot", "", "draw delay and loss over time and the delay CDF into this .png or .svg file")
	fs.Float64Var(&o.maxLoss, "max-loss", 0.01, "exit 1 when any kind's loss exceeds this fraction")
	fs.IntVar(&o.maxJoinFailures, "max-join-failures", 0, "exit 1 when more joins than this fail")
	fs.StringVar(&o.progress, "progress", "auto", "live display: auto (bars on a terminal, lines otherwise), bars, lines or none")
	lf := logflag.Add(fs)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	var err error
	o.log = lf.New(stderr)
	c.Logger = o.log
	if *ids != "" {
		c.MeetingIDs = strings.Split(*ids, ",")
		if c.Meetings == 1 || c.Meetings == 0 {
			c.Meetings = len(c.MeetingIDs)
		}
	}
	switch c.Shape {
	case load.Conference, load.Webinar:
	default:
		return nil, fmt.Errorf("-shape %q: want conference or webinar", c.Shape)
	}
	switch c.Shape {
	case load.Webinar:
		c.Publishers[media.Audio.Index()], c.Publishers[media.Video.Index()] = 1, 1
	default:
		c.Publishers[media.Audio.Index()], c.Publishers[media.Video.Index()] = c.Participants, min(2, c.Participants)
	}
	for k, p := range pubs {
		if *p >= 0 {
			c.Publishers[k.Index()] = *p
		}
	}
	if *srcIPs != "" {
		if c.SourceIPs, err = parseSourceIPs(*srcIPs); err != nil {
			return nil, err
		}
	}
	if *pin == "" {
		return nil, errors.New("-pin is required (the fingerprint `mmr` logs)")
	}
	tc, err := tlsutil.PinnedClientConfig(*pin)
	if err != nil {
		return nil, fmt.Errorf("-pin: %w", err)
	}
	switch {
	case *web != "" && *direct != "":
		return nil, errors.New("-web and -direct exclude each other")
	case *web != "":
		c.Connect = &connect.Config{Web: *web, WebTLS: tc, Passcode: *passcode}
	case *direct != "":
		if *secretFile == "" {
			return nil, errors.New("-direct needs -join-secret-file")
		}
		b, err := os.ReadFile(*secretFile)
		if err != nil {
			return nil, err
		}
		// cmd/mmr's secret is the file's text (64 hex digits) as bytes,
		// as `mmr token` signs with it.
		secret := []byte(strings.TrimSpace(string(b)))
		c.Direct = &load.DirectConfig{Control: *direct, TLS: tc, JoinSecret: secret}
	default:
		return nil, errors.New("-web or -direct is required")
	}
	switch o.progress {
	case "auto", "bars", "lines", "none":
	default:
		return nil, fmt.Errorf("-progress %q: want auto, bars, lines or none", o.progress)
	}
	return o, nil
}

func parseSourceIPs(s string) ([]netip.Addr, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		var out []netip.Addr
		for a := p.Masked().Addr().Next(); p.Contains(a) && len(out) < 65536; a = a.Next() {
			out = append(out, a)
		}
		return out, nil
	}
	var out []netip.Addr
	for _, f := range strings.Split(s, ",") {
		a, err := netip.ParseAddr(strings.TrimSpace(f))
		if err != nil {
			return nil, fmt.Errorf("-source-ips: %w", err)
		}
		out = append(out, a)
	}
	return out, nil
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// runLoad is `openmmr load`.
func runLoad(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	o, err := parseLoad(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "openmmr load:", err)
		return 2
	}
	mode := o.progress
	if mode == "auto" {
		mode = "lines"
		if isTerminal(stdout) {
			mode = "bars"
		}
	}
	var disp *display
	switch mode {
	case "bars":
		disp = newBars(stdout, o.cfg.Meetings*o.cfg.Participants, o.cfg.Duration)
		o.cfg.Progress = disp.update
	case "lines":
		o.cfg.Progress = func(p load.Progress) {
			fmt.Fprintf(stdout, "%s: joined %d/%d (%d failed, %d joining), rx %.0f pkt/s, tx %.0f pkt/s, loss %.2f%%, window left %v\n",
				p.Phase, p.Joined, p.Expected, p.Failed, p.Joining, p.RxPPS, p.TxPPS, 100*p.Loss, p.WindowLeft.Round(time.Second))
		}
	}
	rep, err := load.Run(ctx, o.cfg)
	if disp != nil {
		disp.finish()
	}
	if err != nil {
		fmt.Fprintln(stderr, "openmmr load:", err)
		return 1
	}
	rep.WriteTable(stdout)
	if o.jsonFile != "" {
		b, err := json.MarshalIndent(rep, "", "  ")
		if err != nil {
			fmt.Fprintln(stderr, "openmmr load:", err)
			return 1
		}
		b = append(b, '\n')
		if o.jsonFile == "-" {
			_, err = stdout.Write(b)
		} else {
			err = os.WriteFile(o.jsonFile, b, 0o644)
		}
		if err != nil {
			fmt.Fprintln(stderr, "openmmr load:", err)
			return 1
		}
	}
	if o.plotFile != "" {
		if err := rep.WritePlot(o.plotFile); err != nil {
			fmt.Fprintln(stderr, "openmmr load:", err)
			return 1
		}
	}
	if bad := rep.Check(o.maxLoss, o.maxJoinFailures); len(bad) > 0 {
		fmt.Fprintln(stdout, "FAIL:", strings.Join(bad, "; "))
		return 1
	}
	fmt.Fprintln(stdout, "PASS")
	return 0
}

// display is the terminal progress: a joins bar and a window bar with the
// live rates (github.com/vbauerster/mpb/v8).
type display struct {
	p      *mpb.Progress
	joins  *mpb.Bar
	window *mpb.Bar
	mu     sync.Mutex
	last   load.Progress
	total  time.Duration
}

func newBars(w io.Writer, participants int, window time.Duration) *display {
	d := &display{total: window}
	d.p = mpb.New(mpb.WithOutput(w), mpb.WithWidth(40), mpb.WithRefreshRate(200*time.Millisecond))
	d.joins = d.p.AddBar(int64(participants),
		mpb.PrependDecorators(decor.Name("joined ", decor.WC{W: 8}), decor.CountersNoUnit("%d/%d")),
		mpb.AppendDecorators(decor.Any(func(decor.Statistics) string {
			d.mu.Lock()
			defer d.mu.Unlock()
			return fmt.Sprintf("failed %d, joining %d", d.last.Failed, d.last.Joining)
		})))
	d.window = d.p.AddBar(int64(window/time.Millisecond),
		mpb.PrependDecorators(decor.Name("window ", decor.WC{W: 8}), decor.Percentage()),
		mpb.AppendDecorators(decor.Any(func(decor.Statistics) string {
			d.mu.Lock()
			defer d.mu.Unlock()
			return fmt.Sprintf("rx %.0f pkt/s, tx %.0f pkt/s, loss %.2f%%, %s", d.last.RxPPS, d.last.TxPPS, 100*d.last.Loss, d.last.Phase)
		})))
	return d
}

func (d *display) update(p load.Progress) {
	d.mu.Lock()
	d.last = p
	d.mu.Unlock()
	d.joins.SetCurrent(int64(p.Joined + p.Failed))
	if p.Phase != "joining" {
		d.window.SetCurrent(int64((d.total - p.WindowLeft) / time.Millisecond))
	}
}

func (d *display) finish() {
	d.joins.SetTotal(-1, true)
	d.window.SetTotal(-1, true)
	d.p.Wait()
}
