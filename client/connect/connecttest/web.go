package connecttest

import (
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/openmmr/mmr/client/connect"
	"github.com/openmmr/mmr/control/token"
	"github.com/openmmr/mmr/tlsutil"
)

// WebConfig configures StartWeb, a web tier that answers POST /v1/lookup
// as the lookup contract says (CONTRACT-lookup.md): meetings by ID with
// their passcodes, join tokens signed with JoinSecret, the zones as given.
type WebConfig struct {
	IP         netip.Addr        // default 127.0.0.1
	Port       uint16            // default ephemeral
	JoinSecret []byte            // required
	Meetings   map[string]string // meeting ID → passcode ("" none)
	// E2EEMeetings are created end-to-end encrypted (real web tier only):
	// their lookups say e2ee and mint tokens with the E2EE flag.
	E2EEMeetings map[string]string // meeting ID → passcode
	Zones        []connect.LookupZone
	TokenTTL     time.Duration // default 1 h; negative: tokens already expired
	ViaProxy     bool          // answer client.via_proxy true (contract stand-in only)
	Tunnels      []connect.Tunnel
}

// Web is a running lookup server over HTTPS with a self-signed certificate.
type Web struct {
	URL         string
	Fingerprint string
	Lookups     atomic.Int64

	cfg       WebConfig
	srv       *http.Server
	ln        net.Listener
	done      chan struct{}
	mu        sync.Mutex
	closeOnce sync.Once
	real      *realWeb // nil: the contract stand-in
}

// startContractWeb starts the contract lookup server of this file: a
// stand-in kept only for what the real web tier cannot do (mint a token
// that is already expired).
func startContractWeb(cfg WebConfig) (*Web, error) {
	if !cfg.IP.IsValid() {
		cfg.IP = netip.MustParseAddr("127.0.0.1")
	}
	if cfg.TokenTTL == 0 {
		cfg.TokenTTL = time.Hour
	}
	if len(cfg.JoinSecret) == 0 {
		return nil, errors.New("connecttest: WebConfig.JoinSecret required")
	}
	cert, err := tlsutil.SelfSigned(cfg.IP.String(), "localhost")
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", netip.AddrPortFrom(cfg.IP, cfg.Port).String())
	if err != nil {
		return nil, err
	}
	w := &Web{cfg: cfg, ln: ln, Fingerprint: tlsutil.Fingerprint(cert), done: make(chan struct{}),
		URL: "https://" + ln.Addr().String()}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/lookup", w.lookup)
	w.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ErrorLog: nil,
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}}
	go func() {
		defer close(w.done)
		_ = w.srv.ServeTLS(ln, "", "")
	}()
	return w, nil
}

// SetZones replaces the zone list. The real web tier's zones are fixed
// when it starts, so it is restarted (same certificate and address).
func (w *Web) SetZones(z []connect.LookupZone) error {
	w.mu.Lock()
	w.cfg.Zones = z
	w.mu.Unlock()
	if w.real == nil {
		return nil
	}
	return w.restart()
}

func (w *Web) fail(rw http.ResponseWriter, status int, code, msg string) {
	rw.Header().Set("Content-Type", "application/json")
	rw.WriteHeader(status)
	_ = json.NewEncoder(rw).Encode(map[string]any{"error": map[string]string{"code": code, "message": msg}})
}

func (w *Web) lookup(rw http.ResponseWriter, r *http.Request) {
	w.Lookups.Add(1)
	var req connect.LookupRequest
	dec := json.NewDecoder(io.LimitReader(r.Body, 4096))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		w.fail(rw, 400, "bad-request", err.Error())
		return
	}
	w.mu.Lock()
	cfg := w.cfg
	w.mu.Unlock()
	pass, ok := cfg.Meetings[req.MeetingID]
	switch {
	case !ok:
		w.fail(rw, 404, "meeting-not-found", "no meeting "+req.MeetingID)
		return
	case pass != "" && req.Passcode == "":
		w.fail(rw, 401, "passcode-required", "this meeting needs a passcode")
		return
	case pass != req.Passcode:
		w.fail(rw, 401, "wrong-passcode", "wrong passcode")
		return
	}
	var id [8]byte
	_, _ = rand.Read(id[:])
	ident := "p-" + hex.EncodeToString(id[:])
	exp := time.Now().Add(cfg.TokenTTL)
	if cfg.TokenTTL < 0 {
		exp = time.Now().Add(-time.Minute)
	}
	tok, err := token.Mint(cfg.JoinSecret, token.Claims{Meeting: req.MeetingID, Identity: ident, Role: token.Participant, Expiry: exp})
	if err != nil {
		w.fail(rw, 500, "internal", err.Error())
		return
	}
	host, _, _ := net.SplitHostPort(r.RemoteAddr)
	resp := connect.LookupResponse{
		Meeting: connect.LookupMeeting{ID: req.MeetingID, Topic: "test meeting", Type: "meeting", DurationMinutes: 60},
		Role:    "participant", Identity: ident, JoinToken: tok, TokenExpires: exp.UTC().Truncate(time.Second),
		Zones: cfg.Zones, Tunnels: append([]connect.Tunnel{}, cfg.Tunnels...), WebClientURL: w.URL + "/j/" + req.MeetingID,
		Client: connect.LookupClient{Address: host, ViaProxy: cfg.ViaProxy},
	}
	rw.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(rw).Encode(resp)
}

// Close stops the server. Idempotent.
func (w *Web) Close() {
	w.closeOnce.Do(func() {
		_ = w.srv.Close()
		<-w.done
		if w.real != nil {
			w.real.close()
		}
	})
}

// LookupZone describes z as the web tier lists it: its ZC pinned.
func (z *Zone) LookupZone() connect.LookupZone {
	return connect.LookupZone{Name: z.Name, Healthy: true, CheckedAt: time.Now().UTC(),
		ZCs: []connect.ZC{{Addr: z.TLSAddr.String(), Fingerprint: z.Fingerprint}}}
}
