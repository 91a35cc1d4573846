// Command zc runs a standalone zone controller (ZC): the registry of a
// zone's MMRs, the "which MMR for meeting M" answer for clients, and the
// echo of their network performance test (docs/zone-protocol.md).
//
//	go run ./cmd/zc                        # :443, self-signed cert and a new zone secret in the state dir
//	go run ./cmd/zc -listen :8443 -state /var/lib/openmmr-zc
//
// The zone secret authenticates MMRs (and the ZC to them); give every ZC and
// MMR of the zone the same one: -secret-file, or OPENMMR_ZONE_SECRET, or
// (visible to other local users, avoid) -secret. Without any, the ZC uses
// <state>/zone.secret, creating it on first start. SIGINT or SIGTERM stops
// it cleanly.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/openmmr/mmr/internal/logflag"
	"github.com/openmmr/mmr/metrics/prom"
	"github.com/openmmr/mmr/tlsutil"
	"github.com/openmmr/mmr/zone"
	"github.com/openmmr/mmr/zone/proto"
)

// secretEnv names the environment variable holding the zone secret.
const secretEnv = "OPENMMR_ZONE_SECRET"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(exitCode(run(ctx, os.Args[1:], os.Stderr), os.Stderr))
}

// exitCode is the process status for run's error: 0 for none and for -h
// (the usage was printed, as `mmr -h` does), else 1 after printing it.
func exitCode(err error, stderr io.Writer) int {
	if err == nil || errors.Is(err, flag.ErrHelp) {
		return 0
	}
	fmt.Fprintln(stderr, "zc:", err)
	return 1
}

// run starts the ZC and serves until ctx ends.
func run(ctx context.Context, args []string, stderr io.Writer) error {
	s, err := start(args, stderr)
	if err != nil {
		return err
	}
	<-ctx.Done()
	return s.Close()
}

// zc is a running zone controller and its -metrics listener.
type zc struct {
	*zone.Server
	met *prom.Server // nil without -metrics
}

// Close stops the metrics listener, then the ZC.
func (z *zc) Close() error {
	if z.met != nil {
		z.met.Close()
	}
	return z.Server.Close()
}

// start parses args and starts the ZC; the caller closes it.
func start(args []string, stderr io.Writer) (*zc, error) {
	fs := flag.NewFlagSet("zc", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		listen     = fs.String("listen", ":443", "TCP address of the TLS listener (IP:port, \":port\" for all addresses)")
		id         = fs.String("id", "", "ZC ID in logs and in the MMRs' status (default: host name)")
		state      = fs.String("state", defaultStateDir(), "directory for the self-signed certificate and the generated zone secret")
		certFile   = fs.String("cert", "", "TLS certificate (PEM); with -key, instead of the self-signed one")
		keyFile    = fs.String("key", "", "TLS private key (PEM) for -cert")
		hosts      = fs.String("hosts", "", "comma-separated extra names and IPs for the self-signed certificate")
		secretFile = fs.String("secret-file", "", "file holding the zone secret (default: "+secretEnv+", else <state>/zone.secret)")
		secretFlag = fs.String("secret", "", "the zone secret itself (visible in the process list: prefer -secret-file)")
		interval   = fs.Duration("interval", zone.DefaultReportInterval, "MMR report interval (the same on every ZC and MMR of the zone)")
		metrics    = fs.String("metrics", "", "serve Prometheus metrics (zc_*) at http://ADDR/metrics, e.g. 127.0.0.1:9803 (empty: off; keep it off public networks)")
		pprofOn    = fs.Bool("pprof", false, "with -metrics: serve net/http/pprof under /debug/pprof/ on the metrics listener")
		lf         = logflag.Add(fs)
	)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if *pprofOn && *metrics == "" {
		return nil, errors.New("-pprof needs -metrics (it is served on its listener)")
	}
	log := lf.New(stderr)

	addr, err := parseListen(*listen)
	if err != nil {
		return nil, fmt.Errorf("-listen %q: %w", *listen, err)
	}
	cert, err := loadCert(*certFile, *keyFile, *state, *hosts, log)
	if err != nil {
		return nil, err
	}
	secret, err := loadSecret(*secretFile, *secretFlag, *state, log)
	if err != nil {
		return nil, err
	}
	s, err := zone.New(zone.Config{
		ID: *id, Listen: addr, Certificate: cert, Secrets: [][]byte{secret},
		ReportInterval: *interval, Logger: log,
	})
	if err != nil {
		if errors.Is(err, os.ErrPermission) {
			return nil, fmt.Errorf("-listen %s: %w (ports below 1024 need root or CAP_NET_BIND_SERVICE; choose another port with -listen, e.g. -listen :8443)", *listen, err)
		}
		var ne *net.OpError
		if errors.As(err, &ne) {
			return nil, fmt.Errorf("-listen %s: %w", *listen, err)
		}
		return nil, err
	}
	z := &zc{Server: s}
	if *metrics != "" {
		m := prom.New(prom.Options{Prefix: "zc", Pprof: *pprofOn})
		m.Register(prom.Sources{Zone: s})
		if z.met, err = prom.Serve(*metrics, "-metrics", m.Handler(), log); err != nil {
			s.Close()
			return nil, err
		}
	}
	return z, nil
}

// parseListen accepts "IP:port" and ":port" (all addresses, dual stack).
func parseListen(s string) (netip.AddrPort, error) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return netip.AddrPort{}, err
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("port: %w", err)
	}
	ip := netip.IPv6Unspecified()
	if host != "" {
		if ip, err = netip.ParseAddr(host); err != nil {
			return netip.AddrPort{}, fmt.Errorf("want an IP address, not a host name: %w", err)
		}
	}
	return netip.AddrPortFrom(ip, uint16(p)), nil
}

func defaultStateDir() string {
	if d, err := os.UserConfigDir(); err == nil {
		return filepath.Join(d, "openmmr", "zc")
	}
	return ".openmmr-zc"
}

func loadCert(certFile, keyFile, state, hosts string, log *slog.Logger) (tls.Certificate, error) {
	if (certFile == "") != (keyFile == "") {
		return tls.Certificate{}, errors.New("-cert and -key go together")
	}
	if certFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return tls.Certificate{}, fmt.Errorf("-cert/-key: %w", err)
		}
		log.Info("TLS certificate loaded", "cert", certFile, "fingerprint", tlsutil.Fingerprint(cert))
		return cert, nil
	}
	var names []string
	for _, h := range strings.Split(hosts, ",") {
		if h = strings.TrimSpace(h); h != "" {
			names = append(names, h)
		}
	}
	cert, created, err := tlsutil.LoadOrCreate(state, names...)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("-state: %w", err)
	}
	log.Info("self-signed TLS certificate: MMRs and clients may pin its fingerprint",
		"dir", state, "created", created, "fingerprint", tlsutil.Fingerprint(cert))
	return cert, nil
}

func loadSecret(file, flagValue, state string, log *slog.Logger) ([]byte, error) {
	switch {
	case file != "":
		s, err := zone.ReadSecretFile(file)
		if err != nil {
			return nil, fmt.Errorf("-secret-file: %w", err)
		}
		return s, nil
	case os.Getenv(secretEnv) != "":
		s := []byte(strings.TrimSpace(os.Getenv(secretEnv)))
		if err := checkSecret(s); err != nil {
			return nil, fmt.Errorf("%s: %w", secretEnv, err)
		}
		return s, nil
	case flagValue != "":
		s := []byte(flagValue)
		if err := checkSecret(s); err != nil {
			return nil, fmt.Errorf("-secret: %w", err)
		}
		return s, nil
	}
	path := filepath.Join(state, "zone.secret")
	s, created, err := zone.LoadOrCreateSecret(path)
	if err != nil {
		return nil, fmt.Errorf("-state: %w", err)
	}
	if created {
		log.Warn("created a new zone secret: copy this file to every ZC and MMR of the zone", "file", path)
	} else {
		log.Info("zone secret loaded", "file", path)
	}
	return s, nil
}

func checkSecret(s []byte) error { return proto.CheckSecret(s) }
