package webclient

import (
	"bytes"
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

// FuzzWebTransportGate: the judgement of a session's datagrams (the input
// split at 0xff 0xfe into datagrams) never panics, never forwards an empty
// or oversized datagram or anything before a Bind, ends the session only
// on a first datagram that is not a Bind, and answers only exact repeats of
// the first Bind.
func FuzzWebTransportGate(f *testing.F) {
	f.Add([]byte{0x80, 96, 0, 1}, 64)
	f.Add(append(make([]byte, 0, 64), 0xff, 0xfe, 0xff, 0xfe), 8)
	f.Add(bytes.Repeat([]byte{0x41}, 300), 100)
	f.Fuzz(func(t *testing.T, in []byte, max int) {
		if max <= 0 || max > MaxMediaMessage {
			max = DefaultMaxDatagram
		}
		g := wtGate{max: max}
		for i, d := range bytes.Split(in, []byte{0xff, 0xfe}) {
			first := g.bind == nil
			v, reason := g.judge(d)
			switch {
			case len(d) == 0 && (v != wtDrop || reason != CutEmpty):
				t.Fatalf("datagram %d: empty judged %v %q", i, v, reason)
			case len(d) > max && (v != wtDrop || reason != CutTooLarge):
				t.Fatalf("datagram %d: %d > %d bytes judged %v %q", i, len(d), max, v, reason)
			case v == wtEnd && (!first || reason != CutNoToken):
				t.Fatalf("datagram %d: end (%q) after the Bind", i, reason)
			case v == wtRebind && !bytes.Equal(d, g.bind):
				t.Fatalf("datagram %d: answered as a repeat but differs from the Bind", i)
			case v == wtForward && first && g.bind == nil:
				t.Fatalf("datagram %d: forwarded before a Bind", i)
			}
			if v == wtEnd {
				return
			}
		}
	})
}
