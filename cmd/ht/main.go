// Command ht runs an openmmr HTTP tunnel server: clients that reach no zone
// controller open WebSocket streams over HTTPS through it to the zones it
// serves (package tunnel; docs/PROTOCOL.md, "HTTP tunnel (HTTPS 443)").
//
//	ht -join-secret-file /etc/openmmr/join.secret -zc zc1.ams.example:443=FINGERPRINT,zc2.ams.example:443=FINGERPRINT
//	ht -join-secret-file /etc/openmmr/join.secret -zones zc1.ams.example:443,mmr1.ams.example:443
//
// On SIGTERM or SIGINT it stops taking streams, closes the open ones with
// WebSocket close code 1012 so clients move to another tunnel at once, and
// exits when they are gone or after -shutdown-timeout.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/openmmr/mmr/internal/logflag"
	"github.com/openmmr/mmr/metrics/prom"
	"github.com/openmmr/mmr/tlsutil"
	"github.com/openmmr/mmr/tunnel"
)

func main() {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	os.Exit(run(context.Background(), os.Args[1:], os.Stderr, sig, nil))
}

// options are the parsed flags.
type options struct {
	listen, cert, key, state string
	secretFile, metrics      string
	shutdownTimeout          time.Duration
	pprof                    bool
	log                      *logflag.Flags
	cfg                      tunnel.Config
}

// defaultState is where ht keeps a generated certificate.
func defaultState() string {
	if d := os.Getenv("STATE_DIRECTORY"); d != "" { // systemd StateDirectory=
		return d
	}
	if d, err := os.UserConfigDir(); err == nil {
		return filepath.Join(d, "openmmr-ht")
	}
	return ".openmmr-ht"
}

func parseFlags(args []string, out io.Writer) (*options, error) {
	fs := flag.NewFlagSet("ht", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.Usage = func() {
		fmt.Fprintf(out, "Usage: ht -join-secret-file FILE -zones HOST:PORT,... [flags]\n\nRuns an openmmr HTTP tunnel server. Flags:\n")
		fs.PrintDefaults()
	}
	o := &options{}
	fs.StringVar(&o.listen, "listen", ":443", "TLS listen address (non-root: e.g. 127.0.0.1:9443)")
	fs.StringVar(&o.cert, "cert", "", "TLS certificate chain PEM file (with -key; default: a self-signed certificate in -state)")
	fs.StringVar(&o.key, "key", "", "TLS private key PEM file")
	fs.StringVar(&o.state, "state", defaultState(), "directory for the self-signed certificate (created on first start)")
	fs.StringVar(&o.secretFile, "join-secret-file", "", "join-token secret file, the MMRs' (required; its bytes, one trailing newline ignored)")
	zones := fs.String("zones", "", "comma-separated host:port destinations streams may reach: the zones' ZCs, MMR TLS and TCP media addresses")
	zcs := fs.String("zc", "", "comma-separated ZC=FINGERPRINT (host:port=SHA-256 hex): these ZCs are reachable, and a client may also reach the MMR endpoints of its meeting's placement, which ht looks up there")
	fs.StringVar(&o.metrics, "metrics", "", "serve Prometheus metrics at http://ADDR/metrics, e.g. 127.0.0.1:9802 (empty: off; keep it off public networks)")
	fs.BoolVar(&o.pprof, "pprof", false, "with -metrics: serve net/http/pprof under /debug/pprof/ on the metrics listener")
	fs.StringVar(&o.cfg.Name, "name", "", "server name in ping answers (default: the host name)")
	fs.IntVar(&o.cfg.MaxConns, "max-conns", 0, "open TCP connections at most (0: default 10000)")
	fs.IntVar(&o.cfg.MaxStreams, "max-streams", 0, "tunnelled streams at most (0: default 8000)")
	fs.IntVar(&o.cfg.StreamsPerClient, "streams-per-client", 0, "streams per join-token identity (0: default 16)")
	fs.IntVar(&o.cfg.StreamsPerAddr, "streams-per-addr", 0, "streams per source IP (0: default 1024)")
	fs.IntVar(&o.cfg.BytesPerClient, "bytes-per-client", 0, "relay bytes/s per identity, both ways (0: default 4 MiB/s)")
	fs.IntVar(&o.cfg.BytesPerAddr, "bytes-per-addr", 0, "relay bytes/s per source IP (0: default 64 MiB/s)")
	fs.DurationVar(&o.cfg.IdleTimeout, "idle-timeout", 0, "close a stream idle this long (0: default 60s)")
	fs.DurationVar(&o.shutdownTimeout, "shutdown-timeout", 10*time.Second, "on SIGTERM, cut streams still open after this long")
	o.log = logflag.Add(fs)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q (see -h)", fs.Arg(0))
	}
	if o.secretFile == "" {
		return nil, errors.New("-join-secret-file is required")
	}
	for _, z := range strings.Split(*zones, ",") {
		if z = strings.TrimSpace(z); z != "" {
			o.cfg.Zones = append(o.cfg.Zones, z)
		}
	}
	var placer tunnel.ZCPlacer
	for _, z := range strings.Split(*zcs, ",") {
		if z = strings.TrimSpace(z); z == "" {
			continue
		}
		addr, fp, ok := strings.Cut(z, "=")
		if !ok {
			return nil, fmt.Errorf("-zc %q: want host:port=fingerprint", z)
		}
		pin, err := tlsutil.PinnedClientConfig(fp)
		if err != nil {
			return nil, fmt.Errorf("-zc %q: %w", z, err)
		}
		placer.ZCs = append(placer.ZCs, tunnel.ZC{Addr: addr, TLS: pin})
		o.cfg.Zones = append(o.cfg.Zones, addr)
	}
	if len(placer.ZCs) > 0 {
		o.cfg.Placer = &placer
	}
	if len(o.cfg.Zones) == 0 {
		return nil, errors.New("-zones or -zc is required")
	}
	if (o.cert == "") != (o.key == "") {
		return nil, errors.New("-cert and -key go together")
	}
	if o.cfg.Name == "" {
		o.cfg.Name, _ = os.Hostname()
	}
	if o.pprof && o.metrics == "" {
		return nil, errors.New("-pprof needs -metrics (it is served on its listener)")
	}
	return o, nil
}

// readSecret reads a secret file: its bytes, one trailing newline ignored
// (the format of the MMR's join.secret and `mmr token -secret-file`).
func readSecret(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return []byte(strings.TrimSuffix(string(b), "\n")), nil
}

// running is what run hands to tests once the server listens.
type running struct {
	srv         *tunnel.Server
	addr        string
	fingerprint string
	metrics     string
}

// run starts the tunnel server and blocks until ctx ends or a value
// arrives on term, then shuts down gracefully. started, when not nil,
// receives the running server (tests).
func run(ctx context.Context, args []string, stderr io.Writer, term <-chan os.Signal, started chan<- running) int {
	o, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "ht:", err)
		return 2
	}
	log := o.log.New(stderr)
	if o.cfg.Secret, err = readSecret(o.secretFile); err != nil {
		log.Error("ht: join secret", "err", err)
		return 1
	}
	var cert tls.Certificate
	if o.cert != "" {
		cert, err = tls.LoadX509KeyPair(o.cert, o.key)
	} else {
		var created bool
		cert, created, err = tlsutil.LoadOrCreate(o.state)
		if err == nil && created {
			log.Info("ht: created a self-signed certificate", "dir", o.state)
		}
	}
	if err != nil {
		log.Error("ht: certificate", "err", err)
		return 1
	}
	o.cfg.Log = log
	srv, err := tunnel.NewServer(o.cfg)
	if err != nil {
		log.Error("ht: cannot start", "err", err)
		return 1
	}
	defer srv.Close()
	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		log.Error("ht: -listen", "err", err)
		return 1
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln, cert) }()
	r := running{srv: srv, addr: ln.Addr().String(), fingerprint: tlsutil.Fingerprint(cert)}
	if o.metrics != "" {
		pm := prom.New(prom.Options{Prefix: "ht", Pprof: o.pprof})
		pm.Register(prom.Sources{Tunnel: srv})
		m, err := prom.Serve(o.metrics, "-metrics", pm.Handler(), log)
		if err != nil {
			log.Error("ht: cannot start", "err", err)
			return 1
		}
		defer m.Close()
		r.metrics = m.Addr().String()
	}
	log.Info("ht: running", "addr", r.addr, "fingerprint", r.fingerprint, "zones", strings.Join(o.cfg.Zones, ","))
	if started != nil {
		started <- r
	}
	select {
	case <-ctx.Done():
	case s := <-term:
		log.Info("ht: stopping", "signal", s.String(), "streams", srv.Stats().Streams)
	case err := <-served:
		log.Error("ht: listener stopped", "err", err)
		return 1
	}
	sctx, cancel := context.WithTimeout(context.Background(), o.shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.Warn("ht: streams cut at the shutdown timeout", "err", err)
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		log.Error("ht: serve", "err", err)
	}
	log.Info("ht: stopped")
	return 0
}
