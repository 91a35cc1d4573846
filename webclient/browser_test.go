package webclient

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"net"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/openmmr/mmr/config"
	"github.com/openmmr/mmr/control"
	"github.com/openmmr/mmr/internal/docvec"
	"github.com/openmmr/mmr/router"
	"github.com/openmmr/mmr/tlsutil"
	"github.com/openmmr/mmr/web"
	"github.com/openmmr/mmr/web/store"
)

// chromium returns the browser to drive: $CHROMIUM, else chromium on PATH.
// Without one the test fails when CI=true (CI must install it: apt-get
// install chromium) and is skipped otherwise.
func chromium(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("CHROMIUM"); p != "" {
		return p
	}
	for _, n := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(n); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("browser tests need chromium and CI=true: install it (apt-get install chromium) or set CHROMIUM")
	}
	t.Skip("no chromium on PATH (apt-get install chromium, or set CHROMIUM): browser tests skipped")
	return ""
}

// webZone is a whole zone in process, as cmd/mmr assembles it: the router,
// the control server (also on its own TLS port for native clients), the
// web tier with the web client mounted (web.Config.Extra), over real TLS
// with a self-signed certificate that the browsers pin by SPKI.
type webZone struct {
	rt      *router.Router
	ctl     *control.Server
	wc      *Handler
	web     *web.Server
	wt      *WebTransport // nil unless asked for
	wtPort  int           // its UDP port: the browsers' URL's port number
	url     string        // https://127.0.0.1:PORT: the browsers' (in their namespace when netns)
	hostURL string        // the same server in the test's own namespace (native clients)
	ns      *netns        // the browsers' network namespace; nil: the host's
	spki    string        // base64 SHA-256 of the certificate's SPKI
	fp      string
	meeting web.Created
}

func startWebZone(t *testing.T, mod func(*control.Config)) *webZone {
	t.Helper()
	return startWebZoneWith(t, mod, false)
}

// startWebZoneWith is startWebZone, with a WebTransport server on the
// browsers' URL's port number (UDP, in their namespace) when withWT.
func startWebZoneWith(t *testing.T, mod func(*control.Config), withWT bool) *webZone {
	t.Helper()
	z := &webZone{}
	var err error
	z.rt, err = router.New(router.Config{UDP: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:0")}, Shards: 1, Logger: quietLogger(), SocketBuffer: 1 << 20})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, z.rt.Close()) })
	cert, err := tlsutil.SelfSigned()
	require.NoError(t, err)
	z.fp = tlsutil.Fingerprint(cert)
	leaf := cert.Leaf
	if leaf == nil {
		leaf, err = x509Parse(cert.Certificate[0])
		require.NoError(t, err)
	}
	sum := sha256.Sum256(leaf.RawSubjectPublicKeyInfo)
	z.spki = base64.StdEncoding.EncodeToString(sum[:])
	cc := control.Config{Addr: "127.0.0.1:0", TLS: tlsutil.ServerConfig(cert), Secret: testSecret, Logger: quietLogger(),
		Endpoints: control.UDPEndpoints(z.rt.UDPAddrs()), Grace: 8 * time.Second}
	if mod != nil {
		mod(&cc)
	}
	z.ctl, err = control.New(cc, z.rt)
	require.NoError(t, err)
	require.NoError(t, z.ctl.Start())
	t.Cleanup(func() { require.NoError(t, z.ctl.Close()) })
	// A generous WebTransport timeout: a handshake that a loaded machine
	// delays must not look like blocked UDP.
	z.wc, err = New(Config{Control: z.ctl, Media: z.rt, Logger: quietLogger(), WebTransport: withWT, WebTransportTimeout: 6 * time.Second})
	require.NoError(t, err)

	ctx := ctxT(t)
	st, err := store.Open(ctx, "sqlite:"+filepath.Join(t.TempDir(), "web.db"))
	require.NoError(t, err)
	t.Cleanup(func() { st.Close() })
	site := config.Default()
	site.Web.ZoneCheckInterval = config.Duration(time.Hour)
	site.Web.Limits.LookupRate, site.Web.Limits.LookupBurst = 1000, 1000
	site.Zones = []config.Zone{{Name: "local", ZCs: []config.ZC{{Addr: "127.0.0.1:9", Fingerprint: z.fp}}}}
	z.web, err = web.New(web.Config{Site: site, Store: st, Secret: testSecret, Logger: quietLogger(),
		Argon2: web.Argon2Params{Time: 1, MemoryKiB: 64, Threads: 1}, Extra: z.wc.Routes()})
	require.NoError(t, err)
	t.Cleanup(func() { z.web.Close() })
	topic := "browser test"
	z.meeting, err = z.web.CreateMeeting(ctx, web.MeetingRequest{Topic: &topic})
	require.NoError(t, err)

	serve := func(ln net.Listener) *httptest.Server {
		ts := httptest.NewUnstartedServer(nil)
		if ln != nil {
			ts.Listener.Close()
			ts.Listener = ln
		}
		ts.Config = z.web.HTTPServer()
		ts.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2", "http/1.1"}}
		ts.EnableHTTP2 = true
		ts.StartTLS()
		t.Cleanup(func() {
			ts.CloseClientConnections()
			require.NoError(t, z.wc.Close())
			ts.Close()
		})
		return ts
	}
	host := serve(nil)
	z.url, z.hostURL = host.URL, host.URL
	ns, reason := loopbackNetns(t)
	if ns != nil {
		ln, err := ns.listenTCP(0)
		require.NoError(t, err)
		z.url, z.ns = serve(ln).URL, ns
	} else {
		t.Logf("browsers run in the host's network namespace: %s", reason)
	}
	if withWT {
		u, err := url.Parse(z.url)
		require.NoError(t, err)
		z.wtPort, err = strconv.Atoi(u.Port())
		require.NoError(t, err)
		var pc net.PacketConn
		if z.ns != nil {
			pc, err = z.ns.listenUDP(z.wtPort)
		} else {
			pc, err = net.ListenPacket("udp4", "127.0.0.1:"+u.Port())
		}
		require.NoError(t, err, "UDP on the TLS port's number")
		z.wt, err = NewWebTransport(WebTransportConfig{Media: z.rt, TLS: tlsutil.ServerConfig(cert), Logger: quietLogger()})
		require.NoError(t, err)
		done := make(chan error, 1)
		go func() { done <- z.wt.Serve(pc) }()
		t.Cleanup(func() {
			require.NoError(t, z.wt.Close())
			require.NoError(t, <-done)
		})
	}
	return z
}

// artefacts is where the browser tests put their screenshots:
// $OPENMMR_ARTIFACTS, else openmmr-webclient-artifacts in the temporary
// directory. Kept after the test for a reviewer.
func artefacts(t *testing.T) string {
	d := os.Getenv("OPENMMR_ARTIFACTS")
	if d == "" {
		d = filepath.Join(os.TempDir(), "openmmr-webclient-artifacts")
	}
	require.NoError(t, os.MkdirAll(d, 0o755))
	return d
}

// browser is one headless Chromium with its own profile and one tab.
type browser struct {
	t      *testing.T
	name   string
	ctx    context.Context
	cancel context.CancelFunc
	logs   *bytes.Buffer
	mu     *sync.Mutex
}

func (b *browser) console() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.logs.String()
}

// newBrowser starts a browser (flags as below, then extra) on the meeting's
// page.
func newBrowser(t *testing.T, z *webZone, name string, extra ...chromedp.ExecAllocatorOption) *browser {
	t.Helper()
	path := chromium(t)
	exe := path
	if z.ns != nil {
		exe = z.ns.wrap(path)
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(exe),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("use-fake-device-for-media-stream", true),
		chromedp.Flag("use-fake-ui-for-media-stream", true),
		chromedp.Flag("autoplay-policy", "no-user-gesture-required"),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-default-apps", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-background-timer-throttling", true),
		chromedp.Flag("disable-renderer-backgrounding", true),
		chromedp.Flag("disable-backgrounding-occluded-windows", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("no-default-browser-check", true),
		chromedp.Flag("mute-audio", true),
		chromedp.Flag("ignore-certificate-errors-spki-list", z.spki),
		// Chromium trusts the test's certificate through its SPKI hash; for
		// WebTransport it also requires, unless in developer mode, a
		// certificate issued by a known root (CERTIFICATE_VERIFY_FAILED
		// otherwise, seen in a net log), or serverCertificateHashes with
		// a second, short-lived certificate. Developer mode lifts only
		// the known-root rule: the SPKI pin still verifies the server.
		chromedp.Flag("webtransport-developer-mode", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 800),
	}
	opts = append(opts, extra...)
	actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
	b := &browser{t: t, name: name, logs: &bytes.Buffer{}}
	var mu sync.Mutex
	ctx, cancel := chromedp.NewContext(actx, chromedp.WithListener(func(ev any) {
		mu.Lock()
		defer mu.Unlock()
		switch e := ev.(type) {
		case *runtime.EventConsoleAPICalled:
			var parts []string
			for _, a := range e.Args {
				if a.Description != "" {
					parts = append(parts, a.Description)
				} else {
					parts = append(parts, a.Value.String())
				}
			}
			fmt.Fprintf(b.logs, "%s: console.%s %s\n", name, e.Type, strings.Join(parts, " "))
		case *runtime.EventExceptionThrown:
			d := e.ExceptionDetails.Text
			if e.ExceptionDetails.Exception != nil {
				d += " " + e.ExceptionDetails.Exception.Description
			}
			fmt.Fprintf(b.logs, "%s: exception %s\n", name, d)
		}
	}))
	b.mu = &mu
	b.ctx = ctx
	b.cancel = func() { cancel(); acancel() }
	t.Cleanup(b.close)
	// The first Run starts the browser: no timeout on its context.
	require.NoError(t, chromedp.Do(ctx), "start %s", path)
	require.NoError(t, b.run(60*time.Second, chromedp.Navigate(z.url+"/j/"+z.meeting.ID)), "open the page")
	return b
}

func (b *browser) close() {
	if b.cancel != nil {
		b.cancel()
		b.cancel = nil
	}
}

func (b *browser) run(d time.Duration, actions ...chromedp.Action[chromedp.Void]) error {
	ctx, cancel := context.WithTimeout(b.ctx, d)
	defer cancel()
	return chromedp.Do(ctx, actions...)
}

// eval evaluates expr (awaiting a promise) into out, a pointer.
func eval[T any](b *browser, expr string) (T, error) {
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	return chromedp.Run(ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
}

// pageStats is window.openmmr.stats().
type pageStats struct {
	// Keys: the key ID the page seals with, its live keys (install order)
	// and the keys it refused.
	Keys struct {
		Send   uint32   `json:"send"`
		Live   []uint32 `json:"live"`
		Errors int      `json:"errors"`
	} `json:"keys"`
	ActiveSpeaker uint64 `json:"activeSpeaker"` // of the last active-speaker event, 0 before one
	Phase         string `json:"phase"`
	Error         string `json:"error"`
	ErrorCode     string `json:"errorCode"`
	Participant   uint64 `json:"participant"`
	Transport     string `json:"transport"`
	WTError       string `json:"wtError"`
	Reconnects    int    `json:"reconnects"`
	JoinedAt      int64  `json:"joinedAt"`
	LastLeft      *struct {
		Participant uint64 `json:"participant"`
		Reason      string `json:"reason"`
	} `json:"lastLeft"`
	Tiles map[string]struct {
		Name      string         `json:"name"`
		Video     int            `json:"video"`
		Audio     int            `json:"audio"`
		Content   int            `json:"content"`
		Keyframes int            `json:"keyframes"`
		Drops     map[string]int `json:"drops"`
	} `json:"tiles"`
	Sent map[string]struct {
		SSRC   uint32 `json:"ssrc"`
		Frames int    `json:"frames"`
	} `json:"sent"`
	Links map[string]struct {
		Sent      int     `json:"sent"`
		Received  int     `json:"received"`
		Transport string  `json:"transport"`
		BindMs    float64 `json:"bindMs"`
	} `json:"links"`
}

func (b *browser) stats() (pageStats, error) {
	var s pageStats
	raw, err := eval[string](b, `JSON.stringify(window.openmmr ? window.openmmr.stats() : {phase: "loading"})`)
	if err != nil {
		return s, err
	}
	return s, json.Unmarshal([]byte(raw), &s)
}

// waitFor polls the page until cond holds (a hang guard of d, never a
// measurement) and returns the stats that satisfied it.
func (b *browser) waitFor(what string, d time.Duration, cond func(pageStats) bool) pageStats {
	b.t.Helper()
	deadline := time.Now().Add(d)
	var last pageStats
	var err error
	for time.Now().Before(deadline) {
		if last, err = b.stats(); err == nil && cond(last) {
			return last
		}
		poll := time.NewTimer(200 * time.Millisecond)
		<-poll.C
	}
	js, _ := json.MarshalIndent(last, "", " ")
	b.t.Fatalf("%s: %s not reached in %v (err %v); page state:\n%s\nconsole:\n%s", b.name, what, d, err, js, b.console())
	return last
}

// join fills the form (passcode, name; the fake camera and microphone are
// chosen by default) and joins.
func (b *browser) join(passcode, name string) {
	b.t.Helper()
	require.NoError(b.t, b.run(60*time.Second,
		chromedp.Poll[chromedp.Void](`window.openmmr && window.openmmr.state.ready === true`, chromedp.WithPollingTimeout(50*time.Second)),
		chromedp.SetValue(chromedp.CSS(`#passcode`), passcode),
		chromedp.SetValue(chromedp.CSS(`#name`), name),
		chromedp.Click(chromedp.CSS(`#join-button`)),
	), "%s joins\n%s", b.name, b.console())
}

func (b *browser) screenshot(t *testing.T, file string) string {
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)) // quality 100: PNG
	require.NoError(t, err)
	p := filepath.Join(artefacts(t), file)
	require.NoError(t, os.WriteFile(p, png, 0o644))
	t.Logf("screenshot: %s", p)
	return p
}

// speaking returns the participant IDs of the tiles the page highlights
// as the active speaker (class speaking and data-speaking), joined by
// commas ("" for none).
func (b *browser) speaking() string {
	b.t.Helper()
	s, err := eval[string](b, `[...document.querySelectorAll('.tile.speaking[data-speaking]')].map((e) => e.dataset.pid).join(',')`)
	require.NoError(b.t, err)
	return s
}

// waitSpeaker waits until the page highlights exactly participant p's
// tile (and its state says so).
func (b *browser) waitSpeaker(p uint64) {
	b.t.Helper()
	b.waitFor("active speaker "+strconv.FormatUint(p, 10), pageWait, func(s pageStats) bool { return s.ActiveSpeaker == p })
	require.Eventually(b.t, func() bool { return b.speaking() == strconv.FormatUint(p, 10) }, waitLimit, 50*time.Millisecond,
		"%s: only the tile of %d is highlighted", b.name, p)
}

// toneMic is the browser flag that makes Chromium's fake microphone play
// a WAV file (looped) instead of its beeps: a 440 Hz sine at half of full
// scale, which the page measures at about -15 to -30 dBov (the browser's
// gain control lowers it), loud enough to be an active speaker (louder
// than -50 dBov) in every interval. The beeps are not: a 20 ms beep every
// 500 ms, whose mean over the server's 300 ms intervals sits at the
// speaking threshold.
func toneMic(t *testing.T) chromedp.ExecAllocatorOption {
	const rate, seconds = 48000, 1
	pcm := make([]byte, 2*rate*seconds)
	for i := range rate * seconds {
		binary.LittleEndian.PutUint16(pcm[2*i:], uint16(int16(0.5*32767*math.Sin(2*math.Pi*440*float64(i)/rate))))
	}
	h := make([]byte, 0, 44) // RIFF WAVE, PCM, mono, 16-bit
	h = append(h, "RIFF"...)
	h = binary.LittleEndian.AppendUint32(h, uint32(36+len(pcm)))
	h = append(h, "WAVEfmt "...)
	h = binary.LittleEndian.AppendUint32(h, 16)
	h = binary.LittleEndian.AppendUint16(h, 1) // PCM
	h = binary.LittleEndian.AppendUint16(h, 1) // channels
	h = binary.LittleEndian.AppendUint32(h, rate)
	h = binary.LittleEndian.AppendUint32(h, 2*rate) // bytes per second
	h = binary.LittleEndian.AppendUint16(h, 2)      // block align
	h = binary.LittleEndian.AppendUint16(h, 16)     // bits per sample
	h = append(h, "data"...)
	h = binary.LittleEndian.AppendUint32(h, uint32(len(pcm)))
	p := filepath.Join(t.TempDir(), "tone.wav")
	require.NoError(t, os.WriteFile(p, append(h, pcm...), 0o644))
	return chromedp.Flag("use-file-for-fake-audio-capture", p)
}

// vectors reads the protect test vectors from docs/PROTOCOL.md.
func vectors(t *testing.T) map[string]string {
	v := docvec.Read(t, "../docs/PROTOCOL.md", "<!-- protect test vectors")
	require.Contains(t, v, "srtp.packet")
	return v
}
