package webclient

import (
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

// hostRE is a host[:port] that a browser would put in an Origin.
var hostRE = regexp.MustCompile(`^[A-Za-z0-9.-]+(:[0-9]{1,5})?$`)

// FuzzUpgradeHeaders: the upgrade checks (Origin, Sec-WebSocket-Protocol)
// never panic, accept an Origin of the request's own host, and accept a
// subprotocol list only when it names the protocol.
func FuzzUpgradeHeaders(f *testing.F) {
	f.Add("https://example.org", "example.org", "openmmr-media.v1")
	f.Add("https://evil.example:443", "example.org", "a, openmmr-media.v1 ,b")
	f.Add("null", "h", "")
	f.Add("%zz://", "", ",,,")
	h := &Handler{cfg: Config{AllowedOrigins: []string{"other.example"}}}
	f.Fuzz(func(t *testing.T, origin, host, protos string) {
		r := httptest.NewRequest("GET", "/v1/ws/media", nil)
		r.Host = host
		r.Header.Set("Origin", origin)
		r.Header.Set("Sec-WebSocket-Protocol", protos)
		ok := h.originOK(r)
		if origin == "" && !ok {
			t.Fatal("no Origin (not a browser) must pass")
		}
		got := offers(r, MediaProtocol)
		if got && !strings.Contains(protos, MediaProtocol) {
			t.Fatalf("offers(%q) without the protocol", protos)
		}
		if hostRE.MatchString(host) {
			r.Header.Set("Origin", "https://"+host)
			if !h.originOK(r) {
				t.Fatalf("same-origin %q refused", host)
			}
		}
	})
}
