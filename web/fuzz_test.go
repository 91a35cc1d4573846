package web

import (
	"bytes"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"

	"github.com/openmmr/mmr/config"
)

// FuzzDecodeLookup: any body gets a decoded request that passes every
// check, or a 4xx error; never a panic.
func FuzzDecodeLookup(f *testing.F) {
	f.Add([]byte(`{"meeting_id":"1234567890","passcode":"123456","name":"Alice","capabilities":["udp","tcp","tls"]}`))
	f.Add([]byte(`{"meeting_id":"12345678901","name":"Bob","host_key":"k","panelist_key":"p"}`))
	f.Add([]byte(`{"meeting_id":"1234567890","name":"a"} {}`))
	f.Add([]byte(`{"meeting_id":"1234567890","name":"a","x":1}`))
	f.Add([]byte(`[`))
	f.Fuzz(func(t *testing.T, body []byte) {
		req, e := DecodeLookup(bytes.NewReader(body))
		if e != nil {
			require.GreaterOrEqual(t, e.status, 400)
			require.Less(t, e.status, 500)
			require.NotEmpty(t, e.code)
			return
		}
		require.True(t, validMeetingID(req.MeetingID))
		require.True(t, utf8.ValidString(req.Name) && len(req.Name) >= 1 && len(req.Name) <= maxName)
		require.LessOrEqual(t, len(req.Capabilities), maxCapabilities)
	})
}

// FuzzDecodeMeetingRequest: create and update bodies.
func FuzzDecodeMeetingRequest(f *testing.F) {
	s := &Server{zoneIdx: map[string]int{"ams": 0}}
	f.Add([]byte(`{"id":"1234567890","topic":"t","type":"webinar","passcode":"1","host_key":"123456","panelist_key":"654321","start_time":"2026-12-01T09:00:00Z","duration_minutes":60,"zones":["ams"]}`), true)
	f.Add([]byte(`{"ended":true,"passcode":""}`), false)
	f.Add([]byte(`{"zones":null}`), false)
	f.Fuzz(func(t *testing.T, body []byte, create bool) {
		req, e := s.DecodeMeetingRequest(bytes.NewReader(body), create)
		if e != nil {
			require.GreaterOrEqual(t, e.status, 400)
			require.Less(t, e.status, 500)
			return
		}
		if req.ID != nil {
			require.True(t, create && validMeetingID(*req.ID))
		}
		if req.DurationMinutes != nil {
			require.True(t, *req.DurationMinutes >= 0 && *req.DurationMinutes <= maxDuration)
		}
	})
}

// FuzzClientOf: forwarding headers from a trusted proxy resolve to a valid
// address, never a panic; from an untrusted peer they are ignored.
func FuzzClientOf(f *testing.F) {
	site := config.Default()
	site.Web.TrustedProxies = []string{"10.0.0.0/8"}
	s := &Server{}
	for _, p := range site.Web.TrustedProxies {
		pf, _ := config.ParsePrefix(p)
		s.proxies = append(s.proxies, pf)
	}
	f.Add("10.0.0.1:1234", `for="[2001:db8::7]:4711";proto=https, for=10.0.0.9`, "198.51.100.1, 203.0.113.7", "1.1 lb")
	f.Add("192.0.2.1:1", "for=unknown", "", "")
	f.Add("[::1]:1", "", "x, , y", strings.Repeat("v", 300))
	f.Fuzz(func(t *testing.T, remote, fwd, xff, via string) {
		r := &http.Request{RemoteAddr: remote, Header: http.Header{}}
		r.Header.Set("Forwarded", fwd)
		r.Header.Set("X-Forwarded-For", xff)
		r.Header.Set("Via", via)
		ci := s.clientOf(r)
		peer, err := netip.ParseAddrPort(remote)
		if err != nil {
			return
		}
		require.True(t, ci.addr.IsValid())
		require.LessOrEqual(t, len(ci.Proxy), 128)
		if !s.trusted(peer.Addr().Unmap()) {
			require.Equal(t, peer.Addr().Unmap(), ci.addr)
			require.False(t, ci.ViaProxy)
		}
	})
}
