// Command web runs the openmmr web tier alone: the meetings API and the
// meeting lookup over HTTPS (docs/PROTOCOL.md, "Web tier"), on SQLite for
// one node or PostgreSQL for several behind a load balancer.
//
//	go run ./cmd/web -config site.toml                       # HTTPS :443
//	go run ./cmd/web -listen 127.0.0.1:8444 -state /tmp/w    # self-signed, SQLite in /tmp/w
//	go run ./cmd/web -db postgres://web@db/openmmr -config site.toml
//	go run ./cmd/web apikey create -name ops -db ...         # prints an admin API key
//
// The join secret (-join-secret-file, default STATE/join.secret) must be
// the MMRs' (mmr -join-secret-file): the web tier signs the join tokens the
// MMRs verify. SIGINT/SIGTERM stop it gracefully.
package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/openmmr/mmr/config"
	"github.com/openmmr/mmr/internal/logflag"
	"github.com/openmmr/mmr/metrics/prom"
	"github.com/openmmr/mmr/tlsutil"
	"github.com/openmmr/mmr/web"
	"github.com/openmmr/mmr/web/store"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if len(os.Args) > 1 && os.Args[1] == "apikey" {
		os.Exit(apikeyMain(ctx, os.Args[2:], os.Stdout, os.Stderr))
	}
	os.Exit(run(ctx, os.Args[1:], os.Stderr, nil))
}

// options are the flags over the configuration file.
type options struct {
	site    config.File
	log     *logflag.Flags
	metrics string // -metrics (serve only)
	pprof   bool   // -pprof (serve only)
}

// defaultState is where the web tier keeps its certificate, secret and
// SQLite database.
func defaultState() string {
	if d := os.Getenv("STATE_DIRECTORY"); d != "" { // systemd StateDirectory=
		return d
	}
	if d, err := os.UserConfigDir(); err == nil {
		return filepath.Join(d, "openmmr")
	}
	return ".openmmr"
}

// parse reads -config and lets the other flags override it.
func parse(name string, args []string, out io.Writer, extra func(*flag.FlagSet)) (*options, *flag.FlagSet, error) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(out)
	cfgFile := fs.String("config", "", "TOML configuration file (config/example.toml); flags override it")
	listen := fs.String("listen", "", "HTTPS listen address (default [web] listen, \":443\")")
	db := fs.String("db", "", "store: sqlite:PATH or postgres://... (default sqlite:STATE/web.db)")
	state := fs.String("state", "", "directory for the self-signed certificate, join secret and SQLite file (default [web] state_dir, else "+defaultState()+")")
	cert := fs.String("cert", "", "PEM certificate chain (with -key; default: a self-signed certificate in STATE)")
	key := fs.String("key", "", "PEM private key of -cert")
	secret := fs.String("join-secret-file", "", "join-token secret shared with the MMRs (default STATE/join.secret, created if missing)")
	lf := logflag.Add(fs)
	if extra != nil {
		extra(fs)
	}
	if err := fs.Parse(args); err != nil {
		return nil, nil, err
	}
	o := &options{site: config.Default(), log: lf}
	if *cfgFile != "" {
		f, err := config.Load(*cfgFile)
		if err != nil {
			return nil, nil, err
		}
		o.site = f
	}
	w := &o.site.Web
	for _, f := range []struct {
		dst *string
		v   string
	}{{&w.Listen, *listen}, {&w.DB, *db}, {&w.StateDir, *state}, {&w.CertFile, *cert}, {&w.KeyFile, *key}, {&w.JoinSecretFile, *secret}} {
		if f.v != "" {
			*f.dst = f.v
		}
	}
	if w.StateDir == "" {
		w.StateDir = defaultState()
	}
	if w.DB == "" {
		w.DB = "sqlite:" + filepath.Join(w.StateDir, "web.db")
	}
	if w.JoinSecretFile == "" {
		w.JoinSecretFile = filepath.Join(w.StateDir, "join.secret")
	}
	if err := o.site.Validate(); err != nil {
		return nil, nil, err
	}
	return o, fs, nil
}

// running is a started web tier (tests read its address).
type running struct {
	addr    net.Addr
	fp      string // certificate fingerprint
	srv     *web.Server
	metrics string // the -metrics address, "" without
}

// run serves until ctx ends. started, when not nil, receives the running
// server (tests).
func run(ctx context.Context, args []string, stderr io.Writer, started chan<- *running) int {
	var metrics *string
	var pprofOn *bool
	o, fs, err := parse("web", args, stderr, func(fs *flag.FlagSet) {
		metrics = fs.String("metrics", "", "serve Prometheus metrics (web_*) at http://ADDR/metrics, e.g. 127.0.0.1:9804 (empty: off; keep it off public networks)")
		pprofOn = fs.Bool("pprof", false, "with -metrics: serve net/http/pprof under /debug/pprof/ on the metrics listener")
	})
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err == nil && *pprofOn && *metrics == "" {
		err = errors.New("-pprof needs -metrics (it is served on its listener)")
	}
	if err != nil {
		fmt.Fprintln(stderr, "web:", err)
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "web: unexpected argument %q (see -h)\n", fs.Arg(0))
		return 2
	}
	o.metrics, o.pprof = *metrics, *pprofOn
	log := o.log.New(stderr)
	if err := serve(ctx, o, log, started); err != nil {
		log.Error("web: stopped", "err", err)
		return 1
	}
	return 0
}

func serve(ctx context.Context, o *options, log *slog.Logger, started chan<- *running) error {
	w := &o.site.Web
	var cert tls.Certificate
	var err error
	if w.CertFile != "" {
		if cert, err = tls.LoadX509KeyPair(w.CertFile, w.KeyFile); err != nil {
			return err
		}
	} else {
		var created bool
		if cert, created, err = tlsutil.LoadOrCreate(w.StateDir); err != nil {
			return err
		}
		if created {
			log.Info("web: created a self-signed certificate (development; give -cert/-key in production)", "dir", w.StateDir)
		}
	}
	fp := tlsutil.Fingerprint(cert)
	secret, err := LoadOrCreateHexSecret(w.JoinSecretFile)
	if err != nil {
		return fmt.Errorf("join secret: %w", err)
	}
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	st, err := store.Open(sctx, w.DB)
	cancel()
	if err != nil {
		return err
	}
	defer st.Close()
	srv, err := web.New(web.Config{Site: o.site, Store: st, Secret: secret, Logger: log})
	if err != nil {
		return err
	}
	defer srv.Close()
	var met *prom.Server
	if o.metrics != "" {
		m := prom.New(prom.Options{Prefix: "web", Pprof: o.pprof})
		m.Register(prom.Sources{Web: srv})
		if met, err = prom.Serve(o.metrics, "-metrics", m.Handler(), log); err != nil {
			return err
		}
		defer met.Close()
	}
	ln, err := net.Listen("tcp", w.Listen)
	if err != nil {
		return fmt.Errorf("cannot listen on %s (%w): port 443 needs root or CAP_NET_BIND_SERVICE; pick another with -listen, e.g. -listen 127.0.0.1:8444", w.Listen, err)
	}
	hs := srv.HTTPServer()
	hs.TLSConfig = tlsutil.ServerConfig(cert)
	hs.TLSConfig.NextProtos = []string{"h2", "http/1.1"}
	errc := make(chan error, 1)
	go func() { errc <- hs.ServeTLS(ln, "", "") }()
	log.Info("web: serving", "addr", ln.Addr(), "db", redactDSN(w.DB), "zones", len(o.site.Zones), "sha256", fp)
	if started != nil {
		r := &running{addr: ln.Addr(), fp: fp, srv: srv}
		if met != nil {
			r.metrics = met.Addr().String()
		}
		started <- r
	}
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sd, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := hs.Shutdown(sd); err != nil {
		hs.Close()
	}
	<-errc
	log.Info("web: stopped")
	return nil
}

// redactDSN hides a password in a PostgreSQL URL for logs.
func redactDSN(dsn string) string {
	if i := strings.Index(dsn, "@"); i > 0 && strings.HasPrefix(dsn, "postgres") {
		if j := strings.Index(dsn, "://"); j > 0 {
			user := dsn[j+3 : i]
			if u, _, ok := strings.Cut(user, ":"); ok {
				return dsn[:j+3] + u + ":xxxxx" + dsn[i:]
			}
		}
	}
	return dsn
}

// apikeyMain is `web apikey create`: it creates an admin API key in the
// store and prints it (shown once; only its hash is stored).
func apikeyMain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "create" {
		fmt.Fprintln(stderr, "usage: web apikey create [-name NAME] [-db DSN | -config FILE | -state DIR]")
		return 2
	}
	var name *string
	o, fs, err := parse("web apikey create", args[1:], stderr, func(fs *flag.FlagSet) {
		name = fs.String("name", "admin", "a name for the key (for the operator)")
	})
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "web apikey:", err)
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "web apikey: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	st, err := store.Open(sctx, o.site.Web.DB)
	if err != nil {
		fmt.Fprintln(stderr, "web apikey:", err)
		return 1
	}
	defer st.Close()
	key, id, err := web.CreateAPIKey(sctx, st, *name, time.Now())
	if err != nil {
		fmt.Fprintln(stderr, "web apikey:", err)
		return 1
	}
	fmt.Fprintf(stderr, "web apikey: created %s (%s); use it as \"Authorization: Bearer KEY\"; it is not shown again\n", id, *name)
	fmt.Fprintln(stdout, key)
	return 0
}

// LoadOrCreateHexSecret reads a secret file (one trailing newline ignored),
// creating a random 32-byte hex secret there (mode 0600) when missing: the
// same format as mmr's join secret, so either may create it.
func LoadOrCreateHexSecret(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		raw := make([]byte, 32)
		if _, err := rand.Read(raw); err != nil {
			return nil, err
		}
		b = []byte(hex.EncodeToString(raw) + "\n")
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, err
		}
		if err := os.WriteFile(path, b, 0o600); err != nil {
			return nil, err
		}
	} else if err != nil {
		return nil, err
	}
	return []byte(strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")), nil
}
