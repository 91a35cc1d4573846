// Command openmmr is the openmmr client. Its join command walks the whole
// connection process (client/connect: lookup, zone selection, MMR
// selection, control channel, per-kind media UDP → TCP → TLS, proxies),
// publishes media per kind and shows what it receives:
//
//	go run ./cmd/openmmr join -web https://127.0.0.1:8443 -pin FINGERPRINT -passcode 123456 1234567890
//	go run ./cmd/openmmr join -local    # the meeting of the one-box mmr on this machine
//
// It exits on SIGINT/SIGTERM or after -duration, printing a summary
// (and writing it as JSON with -json FILE). Exit status: 0 after a join,
// 1 when the join failed (one line says why), 2 for bad usage.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/signal"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/openmmr/mmr/client/connect"
	"github.com/openmmr/mmr/client/secure"
	ctlproto "github.com/openmmr/mmr/control/proto"
	"github.com/openmmr/mmr/internal/logflag"
	"github.com/openmmr/mmr/internal/onebox"
	"github.com/openmmr/mmr/media"
	"github.com/openmmr/mmr/tlsutil"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

func usage(w io.Writer) {
	fmt.Fprintf(w, "Usage: openmmr join [flags] MEETING_ID|URL\n       openmmr join -local [flags]\n\nJoins an openmmr meeting (openmmr join -h lists the flags).\n")
}

// run is main without the process: it returns the exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "load" {
		return runLoad(ctx, args[1:], stdout, stderr)
	}
	if len(args) == 0 || (args[0] != "join" && args[0] != "-h" && args[0] != "-help" && args[0] != "--help") {
		usage(stderr)
		return 2
	}
	if args[0] != "join" {
		usage(stdout)
		return 0
	}
	return join(ctx, args[1:], stdout, stderr)
}

type joinOptions struct {
	cfg      connect.Config
	duration time.Duration
	jsonFile string
	status   time.Duration
	files    map[media.Kind]string
	log      *logflag.Flags
}

func parseJoin(args []string, stderr io.Writer) (*joinOptions, error) {
	fs := flag.NewFlagSet("openmmr join", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: openmmr join [flags] MEETING_ID|URL\n\nJoins a meeting through the web tier and sends synthetic media (or RTP dumps) per kind. Flags:\n")
		fs.PrintDefaults()
	}
	o := &joinOptions{files: map[media.Kind]string{}}
	web := fs.String("web", "", "the web tier's URL, e.g. https://127.0.0.1:8443 (required)")
	pin := fs.String("pin", "", "SHA-256 fingerprint of the web tier's certificate (hex, as `mmr` logs it)")
	ca := fs.String("ca", "", "PEM file of CA certificates that verify the web tier (instead of -pin)")
	fs.StringVar(&o.cfg.Passcode, "passcode", "", "the meeting's passcode")
	fs.StringVar(&o.cfg.Name, "name", "", "display name (default: user@host)")
	fs.StringVar(&o.cfg.HostKey, "host-key", "", "host key (join as host)")
	fs.StringVar(&o.cfg.PanelistKey, "panelist-key", "", "panelist key (webinars: join as a panelist, who may publish)")
	fs.StringVar(&o.cfg.Proxy, "proxy", "", "HTTP proxy URL for every TCP connection (CONNECT); default: HTTPS_PROXY/NO_PROXY, then -pac")
	fs.StringVar(&o.cfg.PAC, "pac", "", "proxy auto-config file URL (http://, https:// or file://)")
	fs.StringVar(&o.cfg.Transport, "transport", "", "force the media transport of every kind: udp, tcp or tls (default: UDP, then TCP, then TLS)")
	fs.StringVar(&o.cfg.Zone, "zone", "", "force a zone by name")
	kinds := fs.String("kinds", "audio,video,content", "media kinds to connect and send")
	fs.DurationVar(&o.duration, "duration", 0, "leave after this long (0: until SIGINT/SIGTERM)")
	fs.StringVar(&o.jsonFile, "json", "", "write the summary as JSON to this file on exit")
	fs.DurationVar(&o.status, "status", time.Second, "interval of the live status lines (0: none)")
	for _, k := range media.Kinds {
		fs.Func(k.String()+"-file", "send this RTP dump (RFC 4571 frames) as "+k.String()+" instead of synthetic media", func(s string) error {
			o.files[k] = s
			return nil
		})
	}
	local := fs.Bool("local", false, "join the meeting of the one-box `mmr` on this machine: -web, -pin, -passcode and the meeting ID come from its state directory (STATE/"+onebox.JoinFile+")")
	state := fs.String("state", onebox.DefaultState(), "the one-box node's state directory, for -local")
	o.log = logflag.Add(fs)
	// Flags may come before and after the meeting ID (the flag package
	// stops at the first argument that is not a flag: parse again after it).
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			break
		}
		positional = append(positional, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if *local {
		j, err := onebox.Read(*state)
		if err != nil {
			return nil, fmt.Errorf("-local: %w", err)
		}
		// Flags given explicitly win over the file.
		if *web == "" {
			*web = j.Web
		}
		if *pin == "" && *ca == "" {
			*pin = j.Pin
		}
		if o.cfg.Passcode == "" {
			o.cfg.Passcode = j.Passcode
		}
		if len(positional) == 0 {
			positional = []string{j.Meeting}
		}
	}
	if len(positional) != 1 {
		return nil, errors.New("want exactly one MEETING_ID or URL (or -local)")
	}
	o.cfg.MeetingID = positional[0]
	if *web == "" {
		return nil, errors.New("-web is required (the one-box `mmr` logs the exact join command)")
	}
	o.cfg.Web = *web
	switch {
	case *pin != "" && *ca != "":
		return nil, errors.New("-pin and -ca exclude each other")
	case *pin != "":
		tc, err := tlsutil.PinnedClientConfig(*pin)
		if err != nil {
			return nil, fmt.Errorf("-pin: %w", err)
		}
		o.cfg.WebTLS = tc
	case *ca != "":
		b, err := os.ReadFile(*ca)
		if err != nil {
			return nil, fmt.Errorf("-ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("-ca: %s holds no PEM certificate", *ca)
		}
		o.cfg.WebTLS = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	default:
		return nil, errors.New("-pin or -ca is required to verify the web tier")
	}
	if o.cfg.Name == "" {
		h, _ := os.Hostname()
		u := os.Getenv("USER")
		if u == "" {
			u = "user"
		}
		o.cfg.Name = u + "@" + h
		if len(o.cfg.Name) > 64 {
			o.cfg.Name = o.cfg.Name[:64]
		}
	}
	for _, s := range strings.Split(*kinds, ",") {
		k, err := media.ParseKind(strings.TrimSpace(s))
		if err != nil {
			return nil, fmt.Errorf("-kinds: %w", err)
		}
		o.cfg.Kinds = append(o.cfg.Kinds, k)
	}
	return o, nil
}

// kindState is one kind's sender and receiver statistics.
type kindState struct {
	kind media.Kind
	gen  *generator
	rx   *rxStats
	prev struct {
		at                time.Time
		bytesIn, bytesOut uint64
	}
}

// roster follows the other participants.
type roster struct {
	mu      sync.Mutex
	names   map[uint64]string
	left    []string
	self    uint64 // this participant's ID, once joined
	speaker uint64 // the active speaker the server named last, 0 for none yet
}

func (r *roster) event(m any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch e := m.(type) {
	case *ctlproto.ParticipantJoined:
		r.names[e.Participant.ID] = nameOf(e.Participant)
	case *ctlproto.ParticipantLeft:
		if n, ok := r.names[e.Participant]; ok {
			r.left = append(r.left, n+" ("+e.Reason+")")
		}
		delete(r.names, e.Participant)
	case *ctlproto.ActiveSpeaker:
		r.speaker = e.Participant
	}
}

// speaking returns who the server says is speaking: a name, "you", or ""
// before the first active-speaker event.
func (r *roster) speaking() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case r.speaker == 0:
		return ""
	case r.speaker == r.self:
		return "you"
	}
	return r.names[r.speaker]
}

func nameOf(e ctlproto.RosterEntry) string {
	if e.Name != "" {
		return e.Name
	}
	return e.Identity
}

func (r *roster) list() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, n := range r.names {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Summary is what join prints and writes with -json.
type Summary struct {
	Meeting  string                 `json:"meeting"`
	Joined   bool                   `json:"joined"`
	Error    string                 `json:"error,omitempty"`
	Advice   string                 `json:"advice,omitempty"`
	Duration time.Duration          `json:"duration_ns"`
	RTT      time.Duration          `json:"control_rtt_ns"`
	Roster   []string               `json:"roster"`
	Left     []string               `json:"left,omitempty"`
	Kinds    map[string]KindSummary `json:"kinds"`
	// Protection is the media protection's mode and counters.
	Protection ProtectionSummary `json:"media_protection"`
	Connect    connect.Result    `json:"connect"`
}

// ProtectionSummary is the media protection at the end of a join: the
// mode, the last security code (E2EE) and what was opened and rejected.
type ProtectionSummary struct {
	Mode          string `json:"mode"`
	SecurityCode  string `json:"security_code,omitempty"`
	KeyID         uint32 `json:"key_id"`
	Opened        uint64 `json:"opened"`
	Rejected      uint64 `json:"rejected"`
	Auth          uint64 `json:"auth"`
	Replayed      uint64 `json:"replayed"` // replayed or older than the replay window
	UnknownKey    uint64 `json:"unknown_key"`
	UnknownSender uint64 `json:"unknown_sender"`
	SealErrors    uint64 `json:"seal_errors"` // packets not sent: no meeting key yet
	RTCPRejected  uint64 `json:"rtcp_rejected"`
	KeysInstalled uint64 `json:"keys_installed"`
}

// syncWriter serialises writes to w.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// KindSummary is one kind's totals.
type KindSummary struct {
	Transport  string    `json:"transport"`
	Moves      uint64    `json:"moves"`
	PacketsOut uint64    `json:"packets_out"`
	BytesOut   uint64    `json:"bytes_out"`
	PacketsIn  uint64    `json:"packets_in"`
	BytesIn    uint64    `json:"bytes_in"`
	Received   rxSummary `json:"received"`
}

func join(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	o, err := parseJoin(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "openmmr join:", err)
		return 2
	}
	stdout = &syncWriter{w: stdout} // the media protection reports key changes from its own goroutine
	log := o.log.New(stderr)
	o.cfg.Logger = log
	o.cfg.Media.OnChange = func(i secure.Info) {
		if i.Mode == ctlproto.ProtectionE2EE && i.Code != "" {
			// The security code changes with every key: participants
			// compare it while they show the same key ID.
			fmt.Fprintf(stdout, "end-to-end encrypted: security code %s (key %d, %d members, leader %d)\n", i.Code, i.SendKey, i.Members, i.Leader)
		}
	}
	states := map[media.Kind]*kindState{}
	o.cfg.SSRCs = map[media.Kind][]uint32{}
	for _, k := range o.cfg.Kinds {
		ssrc := rand.Uint32()
		st := &kindState{kind: k, gen: newGenerator(k, ssrc, uint16(rand.Uint32())), rx: newRxStats(k)}
		if path := o.files[k]; path != "" {
			src, err := loadRTPDump(path)
			if err != nil {
				fmt.Fprintln(stderr, "openmmr join:", err)
				return 2
			}
			st.gen.src = src
		}
		states[k] = st
		o.cfg.SSRCs[k] = []uint32{ssrc}
	}
	ros := &roster{names: map[uint64]string{}}
	o.cfg.OnEvent = ros.event
	o.cfg.OnMedia = func(k media.Kind, pkt []byte) {
		if st := states[k]; st != nil {
			st.rx.add(pkt, time.Now())
		}
	}
	start := time.Now()
	sum := Summary{Meeting: connect.NormalizeMeetingID(o.cfg.MeetingID), Kinds: map[string]KindSummary{}}
	s, res, err := connect.Connect(ctx, o.cfg)
	sum.Connect = res
	if err != nil {
		sum.Error = oneLine(err)
		var ce *connect.Error
		if errors.As(err, &ce) {
			sum.Advice = ce.Advice
		}
		fmt.Fprintln(stderr, "openmmr join: cannot join:", sum.Error)
		if sum.Advice != "" {
			fmt.Fprintln(stderr, sum.Advice)
		}
		writeJSON(o.jsonFile, &sum, stderr)
		return 1
	}
	sum.Joined = true
	ros.mu.Lock()
	ros.self = res.Control.Participant
	ros.mu.Unlock()
	for _, e := range s.Joined().Roster {
		ros.event(&ctlproto.ParticipantJoined{Participant: e})
	}
	if o.duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.duration)
		defer cancel()
	}
	var wg sync.WaitGroup
	for _, k := range o.cfg.Kinds {
		wg.Add(1)
		go func() {
			defer wg.Done()
			send(ctx, s.Flow(k), states[k])
		}()
	}
	var rttMu sync.Mutex
	var rtt time.Duration
	wg.Add(1)
	go func() { // control channel RTT every 2 s
		defer wg.Done()
		t := time.NewTicker(2 * time.Second)
		defer t.Stop()
		for {
			pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			if r, _, err := s.Control().Ping(pctx); err == nil {
				rttMu.Lock()
				rtt = r
				rttMu.Unlock()
			}
			cancel()
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	for _, st := range states { // the first status line's rates count from here
		st.prev.at = time.Now()
	}
	fmt.Fprintf(stdout, "joined meeting %s in zone %s on MMR %s as participant %d (%v), media protection %s\n", sum.Meeting, res.Zone, res.MMR.ID, res.Control.Participant, res.Elapsed.Round(time.Millisecond), res.Control.MediaProtection)
	if o.status > 0 {
		t := time.NewTicker(o.status)
	status:
		for {
			select {
			case <-ctx.Done():
				break status
			case <-t.C:
				rttMu.Lock()
				r := rtt
				rttMu.Unlock()
				for _, k := range o.cfg.Kinds {
					fmt.Fprintln(stdout, statusLine(s.Flow(k), states[k], r, ros.list(), ros.speaking()))
				}
			}
		}
		t.Stop()
	} else {
		<-ctx.Done()
	}
	wg.Wait()
	for _, k := range o.cfg.Kinds { // before leaving: the flows close then
		fst := s.Flow(k).Stats()
		sum.Kinds[k.String()] = KindSummary{Transport: fst.Transport, Moves: fst.Moves, PacketsOut: fst.PacketsOut, BytesOut: fst.BytesOut,
			PacketsIn: fst.PacketsIn, BytesIn: fst.BytesIn, Received: states[k].rx.summary()}
	}
	ms := s.Media().Stats()
	mi := s.Media().Info()
	sum.Protection = ProtectionSummary{Mode: mi.Mode, SecurityCode: mi.Code, KeyID: uint32(mi.SendKey), Opened: ms.RTP.Opened,
		Rejected: ms.RTP.Rejected(), Auth: ms.RTP.Auth, Replayed: ms.RTP.Replayed + ms.RTP.TooOld, UnknownKey: ms.RTP.UnknownKey,
		UnknownSender: ms.RTP.UnknownSender, SealErrors: ms.RTP.SealErrors, RTCPRejected: ms.RTCP.Rejected(), KeysInstalled: ms.KeysInstalled}
	lctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	_ = s.Leave(lctx)
	cancel()
	sum.Duration = time.Since(start)
	rttMu.Lock()
	sum.RTT = rtt
	rttMu.Unlock()
	sum.Roster = ros.list()
	ros.mu.Lock()
	sum.Left = append([]string(nil), ros.left...)
	ros.mu.Unlock()
	printSummary(stdout, &sum, o.cfg.Kinds)
	if !writeJSON(o.jsonFile, &sum, stderr) {
		return 1
	}
	return 0
}

// oneLine flattens an error (errors.Join puts newlines between causes).
func oneLine(err error) string { return strings.ReplaceAll(err.Error(), "\n", "; ") }

// send paces one kind's generator until ctx ends.
func send(ctx context.Context, f *connect.Flow, st *kindState) {
	var pkts [][]byte
	next := time.Now()
	for {
		var wait time.Duration
		var err error
		pkts, wait, err = st.gen.next(pkts, time.Now())
		if err != nil {
			return
		}
		for _, p := range pkts {
			_ = f.Send(p) // counted by the flow; the keepalives reconnect a dead path
		}
		next = next.Add(wait)
		if d := time.Until(next); d > 0 {
			t := time.NewTimer(d)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		} else if ctx.Err() != nil {
			return
		} else if d < -time.Second {
			next = time.Now() // fell behind (suspended): do not burst
		}
	}
}

func statusLine(f *connect.Flow, st *kindState, rtt time.Duration, others []string, speaking string) string {
	fs := f.Stats()
	now := time.Now()
	var in, out float64
	if !st.prev.at.IsZero() {
		dt := now.Sub(st.prev.at).Seconds()
		in = float64(fs.BytesIn-st.prev.bytesIn) * 8 / dt / 1000
		out = float64(fs.BytesOut-st.prev.bytesOut) * 8 / dt / 1000
	}
	st.prev.at, st.prev.bytesIn, st.prev.bytesOut = now, fs.BytesIn, fs.BytesOut
	rx := st.rx.summary()
	who := strings.Join(others, ", ")
	if who == "" {
		who = "nobody else"
	}
	if speaking != "" {
		who += "; speaking: " + speaking
	}
	return fmt.Sprintf("%-7s %-3s  out %7.1f kb/s  in %7.1f kb/s  loss %5.1f%%  jitter %6.2f ms  rtt %6.2f ms  with: %s",
		st.kind, fs.Transport, out, in, 100*rx.Loss, rx.JitterMS, float64(rtt)/1e6, who)
}

func printSummary(w io.Writer, s *Summary, kinds []media.Kind) {
	with := strings.Join(s.Roster, ", ")
	if with == "" {
		with = "nobody"
	}
	if len(s.Left) > 0 {
		with += "; left: " + strings.Join(s.Left, ", ")
	}
	fmt.Fprintf(w, "summary: meeting %s, %v, control rtt %v, with: %s\n", s.Meeting, s.Duration.Round(time.Millisecond), s.RTT.Round(10*time.Microsecond), with)
	for _, k := range kinds {
		ks := s.Kinds[k.String()]
		fmt.Fprintf(w, "  %-7s %-3s moves %d  sent %d pkts %d B  received %d pkts %d B from %d sources, lost %d (%.2f%%), jitter %.2f ms, longest gap %.0f ms\n",
			k, ks.Transport, ks.Moves, ks.PacketsOut, ks.BytesOut, ks.PacketsIn, ks.BytesIn, ks.Received.Sources, max(ks.Received.Lost, 0), 100*ks.Received.Loss, ks.Received.JitterMS, ks.Received.MaxGapMS)
	}
	p := s.Protection
	fmt.Fprintf(w, "  media protection %s, key %d: opened %d, rejected %d (auth %d, replayed %d, unknown key %d, unknown sender %d), not sealed %d, rtcp rejected %d\n",
		p.Mode, p.KeyID, p.Opened, p.Rejected, p.Auth, p.Replayed, p.UnknownKey, p.UnknownSender, p.SealErrors, p.RTCPRejected)
	if p.SecurityCode != "" {
		fmt.Fprintf(w, "  security code %s\n", p.SecurityCode)
	}
}

func writeJSON(path string, s *Summary, stderr io.Writer) bool {
	if path == "" {
		return true
	}
	b, err := json.MarshalIndent(s, "", "  ")
	if err == nil {
		err = os.WriteFile(path, append(b, '\n'), 0o644)
	}
	if err != nil {
		fmt.Fprintln(stderr, "openmmr join: -json:", err)
		return false
	}
	return true
}
