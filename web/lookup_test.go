package web

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/openmmr/mmr/config"
	"github.com/openmmr/mmr/control/token"
	"github.com/openmmr/mmr/internal/leaktest"
	"github.com/openmmr/mmr/web/geo/geotest"
	"github.com/openmmr/mmr/web/store/storetest"
)

// deadAddr is a loopback port nobody listens on.
func deadAddr(t testing.TB) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	a := l.Addr().String()
	l.Close()
	return a
}

// testZones are the bar's zones (Amsterdam, Singapore, São Paulo) whose
// ZCs do not answer: all unhealthy alike, so the ranking is the Geo-IP one.
func testZones(t testing.TB) []config.Zone {
	fp := strings.Repeat("ab", 32)
	dead := deadAddr(t)
	return []config.Zone{
		{Name: "ams", Latitude: 52.3676, Longitude: 4.9041, ZCs: []config.ZC{{Addr: dead, Fingerprint: fp}}},
		{Name: "sin", Latitude: 1.3521, Longitude: 103.8198, ZCs: []config.ZC{{Addr: dead, Fingerprint: fp}}},
		{Name: "gru", Latitude: -23.5505, Longitude: -46.6333, ZCs: []config.ZC{{Addr: "[::1]:1", Fingerprint: fp}}},
	}
}

func zoneNames(l lookupAnswer) []string {
	var out []string
	for _, z := range l.Zones {
		out = append(out, z.Name)
	}
	return out
}

func TestLookupPasscodeAndLockout(t *testing.T) {
	leaktest.Check(t)
	site := testSite()
	site.Zones = testZones(t)
	site.Web.WebClientURL = "https://web.example/j/"
	e := newEnv(t, "", site)
	c := e.client(t, "")
	m := e.createMeeting(t, map[string]any{"id": "12345678901", "topic": "Weekly sync", "passcode": "135790", "host_key": "hostkey1",
		"start_time": "2026-12-01T09:00:00Z", "duration_minutes": 60})
	req := func(pass string) map[string]any {
		return map[string]any{"meeting_id": m.ID, "passcode": pass, "name": "Alice", "capabilities": []string{"udp", "tcp", "tls", "future-thing"}}
	}

	a, l := e.lookup(t, c, req("135790"))
	require.Equal(t, http.StatusOK, a.status, string(a.body))
	require.Equal(t, "12345678901", l.Meeting.ID)
	require.Equal(t, "Weekly sync", l.Meeting.Topic)
	require.Equal(t, "meeting", l.Meeting.Type)
	require.Equal(t, "2026-12-01T09:00:00Z", l.Meeting.StartTime)
	require.Equal(t, 60, l.Meeting.DurationMinutes)
	require.Equal(t, "participant", l.Role)
	require.Regexp(t, `^p-[0-9a-f]{16}$`, l.Identity)
	require.Equal(t, "https://web.example/j/12345678901", l.WebClientURL)
	require.NotNil(t, l.Tunnels, "[] not null")
	require.Empty(t, l.Tunnels)
	require.Equal(t, "127.0.0.1", l.Client.Address)
	require.False(t, l.Client.ViaProxy)
	require.Equal(t, []string{"ams", "sin", "gru"}, zoneNames(l), "loopback has no location: default (file) order")
	require.Nil(t, l.Zones[0].DistanceKM)
	require.Equal(t, strings.Repeat("ab", 32), l.Zones[0].ZCs[0].Fingerprint)
	v, err := token.NewVerifier(testSecret)
	require.NoError(t, err)
	claims, err := v.Verify(l.JoinToken, time.Now())
	require.NoError(t, err)
	require.Equal(t, token.Claims{Meeting: "12345678901", Identity: l.Identity, Name: "Alice", ID: claims.ID, Role: token.Participant,
		Expiry: claims.Expiry, Version: token.Version3}, claims)
	require.NotEqual(t, [token.IDSize]byte{}, claims.ID)
	exp, err := time.Parse(time.RFC3339, l.TokenExpires)
	require.NoError(t, err)
	require.True(t, exp.Equal(claims.Expiry))
	require.WithinDuration(t, time.Now().Add(10*time.Minute), exp, time.Minute)

	// Unique per lookup.
	_, l2 := e.lookup(t, c, req("135790"))
	require.NotEqual(t, l.Identity, l2.Identity)
	claims2, err := v.Verify(l2.JoinToken, time.Now())
	require.NoError(t, err)
	require.NotEqual(t, claims.ID, claims2.ID)

	// The host key makes a host; a wrong one is refused.
	hk := req("135790")
	hk["host_key"] = "hostkey1"
	_, l = e.lookup(t, c, hk)
	require.Equal(t, "host", l.Role)
	hk["host_key"] = "hostkey2"
	a, _ = e.lookup(t, c, hk)
	require.Equal(t, CodeWrongHostKey, a.code())

	a, _ = e.lookup(t, c, req(""))
	require.Equal(t, http.StatusUnauthorized, a.status)
	require.Equal(t, CodePasscodeRequired, a.code())
	a, _ = e.lookup(t, c, req("000000"))
	require.Equal(t, http.StatusUnauthorized, a.status)
	require.Equal(t, CodeWrongPasscode, a.code())
	// That was the third failure (wrong host key, wrong passcode counted;
	// passcode-required did not): one more locks the meeting.
	a, _ = e.lookup(t, c, req("000001"))
	require.Equal(t, CodeWrongPasscode, a.code())
	a, _ = e.lookup(t, c, req("135790"))
	require.Equal(t, http.StatusTooManyRequests, a.status, "locked: even the right passcode is refused")
	require.Equal(t, CodeLockedOut, a.code())
	ra, err := strconv.Atoi(a.header.Get("Retry-After"))
	require.NoError(t, err)
	require.InDelta(t, 15*60, ra, 5)

	// Other meetings are not locked; ended ones answer 410; unknown 404.
	open := e.createMeeting(t, map[string]any{"passcode": "", "host_key": "hostkey9"})
	a, l = e.lookup(t, c, map[string]any{"meeting_id": open.ID, "name": "Bob"})
	require.Equal(t, http.StatusOK, a.status, string(a.body))
	// Host keys are guarded by the meeting lockout too, also without a
	// passcode; keyless participants still get in.
	for range 3 {
		a, _ = e.lookup(t, c, map[string]any{"meeting_id": open.ID, "name": "Bob", "host_key": "guess123"})
		require.Equal(t, CodeWrongHostKey, a.code())
	}
	a, _ = e.lookup(t, c, map[string]any{"meeting_id": open.ID, "name": "Bob", "host_key": "hostkey9"})
	require.Equal(t, CodeLockedOut, a.code(), "host key path locked")
	a, l = e.lookup(t, c, map[string]any{"meeting_id": open.ID, "name": "Bob"})
	require.Equal(t, http.StatusOK, a.status, "no secret asked: not locked")
	require.Equal(t, "participant", l.Role)
	a = e.do(t, c, "PATCH", "/v1/meetings/"+open.ID, e.key, map[string]any{"ended": true})
	require.Equal(t, http.StatusOK, a.status)
	a, _ = e.lookup(t, c, map[string]any{"meeting_id": open.ID, "name": "Bob"})
	require.Equal(t, http.StatusGone, a.status)
	require.Equal(t, CodeMeetingEnded, a.code())
	a, _ = e.lookup(t, c, map[string]any{"meeting_id": "5555555555", "name": "Bob"})
	require.Equal(t, http.StatusNotFound, a.status)
	require.Equal(t, CodeMeetingNotFound, a.code())
	require.EqualValues(t, 5, e.srv.Stats().Lookups)
}

func TestSourceLockoutAndRateLimit(t *testing.T) {
	leaktest.Check(t)
	site := testSite()
	site.Zones = testZones(t)
	site.Web.Limits.SourceFailures = 4
	site.Web.Limits.MeetingFailures = 1000
	e := newEnv(t, "", site)
	m := e.createMeeting(t, map[string]any{"passcode": "111111"})
	c2, c3 := e.client(t, "127.0.0.2"), e.client(t, "127.0.0.3")
	for i := range 4 {
		a, _ := e.lookup(t, c2, map[string]any{"meeting_id": fmt.Sprintf("99999999%02d", i), "name": "Mallory"})
		require.Equal(t, CodeMeetingNotFound, a.code(), "enumeration counts as failures")
	}
	a, _ := e.lookup(t, c2, map[string]any{"meeting_id": m.ID, "passcode": "111111", "name": "Mallory"})
	require.Equal(t, CodeLockedOut, a.code(), "the source is locked")
	ra, err := strconv.Atoi(a.header.Get("Retry-After"))
	require.NoError(t, err)
	require.InDelta(t, 60, ra, 5, "the first source lockout is a minute")
	a, _ = e.lookup(t, c3, map[string]any{"meeting_id": m.ID, "passcode": "111111", "name": "Alice"})
	require.Equal(t, http.StatusOK, a.status, "another source is not")

	// The per-source flood limit.
	site = testSite()
	site.Zones = testZones(t)
	site.Web.Limits.LookupRate = 0.01
	site.Web.Limits.LookupBurst = 3
	e = newEnv(t, "", site)
	c := e.client(t, "")
	for range 3 {
		a, _ := e.lookup(t, c, map[string]any{"meeting_id": "1111111111", "name": "x"})
		require.Equal(t, CodeMeetingNotFound, a.code())
	}
	a, _ = e.lookup(t, c, map[string]any{"meeting_id": "1111111111", "name": "x"})
	require.Equal(t, http.StatusTooManyRequests, a.status)
	require.Equal(t, CodeRateLimited, a.code())
	require.NotEmpty(t, a.header.Get("Retry-After"))
	require.EqualValues(t, 1, e.srv.Stats().Refused[CodeRateLimited])
}

func TestLookupBadInput(t *testing.T) {
	leaktest.Check(t)
	site := testSite()
	site.Zones = testZones(t)
	e := newEnv(t, "", site)
	c := e.client(t, "")
	tests := []struct {
		name   string
		body   string
		status int
		code   string
	}{
		{"unknown field", `{"meeting_id":"1234567890","name":"a","pin":"1"}`, 400, CodeBadRequest},
		{"dashes", `{"meeting_id":"123-456-7890","name":"a"}`, 400, CodeInvalidMeetingID},
		{"spaces", `{"meeting_id":"123 456 7890","name":"a"}`, 400, CodeInvalidMeetingID},
		{"nine digits", `{"meeting_id":"123456789","name":"a"}`, 400, CodeInvalidMeetingID},
		{"twelve digits", `{"meeting_id":"123456789012","name":"a"}`, 400, CodeInvalidMeetingID},
		{"unicode digits", `{"meeting_id":"١٢٣٤٥٦٧٨٩٠","name":"a"}`, 400, CodeInvalidMeetingID},
		{"number id", `{"meeting_id":1234567890,"name":"a"}`, 400, CodeBadRequest},
		{"no name", `{"meeting_id":"1234567890"}`, 400, CodeBadRequest},
		{"long name", `{"meeting_id":"1234567890","name":"` + strings.Repeat("n", 65) + `"}`, 400, CodeBadRequest},
		{"control name", `{"meeting_id":"1234567890","name":"a\u0007"}`, 400, CodeBadRequest},
		// encoding/json turns invalid UTF-8 into U+FFFD: a valid name.
		{"bad utf8 name becomes U+FFFD", "{\"meeting_id\":\"1234567890\",\"name\":\"\xff\"}", 404, CodeMeetingNotFound},
		{"17 capabilities", `{"meeting_id":"1234567890","name":"a","capabilities":[` + strings.Repeat(`"x",`, 16) + `"x"]}`, 400, CodeBadRequest},
		{"truncated", `{"meeting_id":"1234567890"`, 400, CodeBadRequest},
		{"array", `[]`, 400, CodeBadRequest},
		{"trailing", `{"meeting_id":"1234567890","name":"a"} x`, 400, CodeBadRequest},
		{"too large", `{"meeting_id":"1234567890","name":"a","capabilities":["` + strings.Repeat("x", MaxLookupBody) + `"]}`, 413, CodeTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := e.do(t, c, "POST", "/v1/lookup", "", tt.body)
			require.Equal(t, tt.status, a.status, string(a.body))
			require.Equal(t, tt.code, a.code())
		})
	}
	a := e.do(t, c, "GET", "/v1/lookup", "", nil)
	require.Equal(t, http.StatusMethodNotAllowed, a.status)
	require.Equal(t, "POST", a.header.Get("Allow"))

	// Oversized headers: 431 from net/http, before any handler.
	req, _ := http.NewRequest("POST", e.ts.URL+"/v1/lookup", strings.NewReader(`{}`))
	req.Header.Set("X-Big", strings.Repeat("h", 2*MaxHeaderBytes))
	tr := e.client(t, "").Transport.(*http.Transport)
	tr.ForceAttemptHTTP2 = false
	tr.TLSClientConfig.NextProtos = []string{"http/1.1"}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusRequestHeaderFieldsTooLarge, resp.StatusCode)
}

// TestGeoRanking is the Geo-IP bar: a generated database places 127.0.0.2
// in Frankfurt and 127.0.0.3 in Tokyo; zones in Amsterdam, Singapore and
// São Paulo; lookups from those source addresses rank the zones by
// distance; an address not in the database gets the default order;
// replacing the database file changes the ranking without a restart.
func TestGeoRanking(t *testing.T) {
	leaktest.Check(t)
	path := filepath.Join(t.TempDir(), "GeoLite2-City.mmdb")
	geotest.Write(t, path, geotest.At("127.0.0.2/32", geotest.Frankfurt), geotest.At("127.0.0.3/32", geotest.Tokyo))
	site := testSite()
	site.Zones = testZones(t)
	site.Web.GeoIPDB = path
	site.Web.GeoIPPoll = config.Duration(20 * time.Millisecond)
	site.Web.DefaultOrder = []string{"gru", "sin", "ams"}
	e := newEnv(t, "", site)
	m := e.createMeeting(t, map[string]any{"passcode": ""})
	from := func(local string) lookupAnswer {
		a, l := e.lookup(t, e.client(t, local), map[string]any{"meeting_id": m.ID, "name": "x"})
		require.Equal(t, http.StatusOK, a.status, string(a.body))
		require.Equal(t, local, l.Client.Address)
		return l
	}
	fra := from("127.0.0.2")
	require.Equal(t, []string{"ams", "gru", "sin"}, zoneNames(fra), "Frankfurt: Amsterdam 365 km, São Paulo 9,800 km, Singapore 10,300 km")
	require.InDelta(t, 365, *fra.Zones[0].DistanceKM, 10)
	require.Less(t, *fra.Zones[1].DistanceKM, *fra.Zones[2].DistanceKM)
	tyo := from("127.0.0.3")
	require.Equal(t, []string{"sin", "ams", "gru"}, zoneNames(tyo), "Tokyo: Singapore 5,300 km, Amsterdam 9,300 km, São Paulo 18,500 km")
	unknown := from("127.0.0.4")
	require.Equal(t, []string{"gru", "sin", "ams"}, zoneNames(unknown), "not in the database: the default order")
	require.Nil(t, unknown.Zones[0].DistanceKM)

	// Swap the cities in the file: the ranking follows, no restart.
	geotest.Write(t, path, geotest.At("127.0.0.2/32", geotest.Tokyo), geotest.At("127.0.0.3/32", geotest.Frankfurt))
	require.Eventually(t, func() bool {
		_, l := e.lookup(t, e.client(t, "127.0.0.2"), map[string]any{"meeting_id": m.ID, "name": "x"})
		return strings.Join(zoneNames(l), ",") == "sin,ams,gru"
	}, 20*time.Second, 20*time.Millisecond)
	require.Equal(t, []string{"ams", "gru", "sin"}, zoneNames(from("127.0.0.3")))

	// Zone affinity of a meeting goes first.
	aff := e.createMeeting(t, map[string]any{"passcode": "", "zones": []string{"gru"}})
	a, l := e.lookup(t, e.client(t, "127.0.0.3"), map[string]any{"meeting_id": aff.ID, "name": "x"})
	require.Equal(t, http.StatusOK, a.status)
	require.Equal(t, []string{"gru", "ams", "sin"}, zoneNames(l))
}

func TestTrustedProxies(t *testing.T) {
	leaktest.Check(t)
	site := testSite()
	site.Zones = testZones(t)
	site.Web.TrustedProxies = []string{"127.0.0.2", "10.0.0.0/8"}
	e := newEnv(t, "", site)
	m := e.createMeeting(t, map[string]any{"passcode": ""})
	look := func(local string, hdr map[string]string) lookupAnswer {
		req, _ := http.NewRequest("POST", e.ts.URL+"/v1/lookup", strings.NewReader(`{"meeting_id":"`+m.ID+`","name":"x"}`))
		req.Header.Set("Content-Type", "application/json")
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := e.client(t, local).Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode)
		var l lookupAnswer
		require.NoError(t, jsonDecode(resp, &l))
		return l
	}
	// An untrusted source's headers are ignored.
	l := look("127.0.0.3", map[string]string{"X-Forwarded-For": "203.0.113.7", "Via": "1.1 evil"})
	require.Equal(t, "127.0.0.3", l.Client.Address)
	require.False(t, l.Client.ViaProxy)
	// A trusted proxy's are believed: the rightmost untrusted hop.
	l = look("127.0.0.2", map[string]string{"X-Forwarded-For": "198.51.100.1, 203.0.113.7, 10.1.2.3", "Via": "1.1 lb.example, 1.1 edge"})
	require.Equal(t, "203.0.113.7", l.Client.Address)
	require.True(t, l.Client.ViaProxy)
	require.Equal(t, "1.1 lb.example", l.Client.Proxy)
	l = look("127.0.0.2", map[string]string{"Forwarded": `for="[2001:db8::7]:4711";proto=https, for=10.0.0.9`})
	require.Equal(t, "2001:db8::7", l.Client.Address)
	require.True(t, l.Client.ViaProxy)
	require.Equal(t, "", l.Client.Proxy)
	l = look("127.0.0.2", nil)
	require.Equal(t, "127.0.0.2", l.Client.Address, "a trusted proxy without headers is the client")
	require.True(t, l.Client.ViaProxy)
}

func TestLockoutAcrossNodesPostgres(t *testing.T) {
	leaktest.Check(t)
	dsn := storetest.PostgresDSN(t)
	site := testSite()
	site.Zones = testZones(t)
	a, b := newEnv(t, dsn, site), newEnv(t, dsn, site)
	m := a.createMeeting(t, map[string]any{"passcode": "424242"})
	ca, cb := a.client(t, ""), b.client(t, "")
	ans, _ := b.lookup(t, cb, map[string]any{"meeting_id": m.ID, "passcode": "424242", "name": "x"})
	require.Equal(t, http.StatusOK, ans.status, "node b sees node a's meeting")
	for i, n := range []*env{a, b, a} {
		c := ca
		if n == b {
			c = cb
		}
		ans, _ := n.lookup(t, c, map[string]any{"meeting_id": m.ID, "passcode": fmt.Sprintf("00000%d", i), "name": "x"})
		require.Equal(t, CodeWrongPasscode, ans.code())
	}
	for _, n := range []struct {
		e *env
		c *http.Client
	}{{a, ca}, {b, cb}} {
		ans, _ := n.e.lookup(t, n.c, map[string]any{"meeting_id": m.ID, "passcode": "424242", "name": "x"})
		require.Equal(t, CodeLockedOut, ans.code(), "3 failures spread over two nodes lock the meeting on both")
	}

	// The passcode verification cache is coherent: node b has verified
	// the passcode of meeting m2 (cached); node a changes it; node b
	// refuses the old one at once and accepts the new one.
	m2 := a.createMeeting(t, map[string]any{"passcode": "111111"})
	look := func(pass string) string {
		ans, _ := b.lookup(t, cb, map[string]any{"meeting_id": m2.ID, "passcode": pass, "name": "x"})
		return ans.code()
	}
	require.Equal(t, "", look("111111"))
	require.Equal(t, "", look("111111"))
	patched := a.do(t, ca, "PATCH", "/v1/meetings/"+m2.ID, a.key, map[string]any{"passcode": "222222"})
	require.Equal(t, http.StatusOK, patched.status)
	require.Equal(t, CodeWrongPasscode, look("111111"))
	require.Equal(t, "", look("222222"))
	// And a meeting deleted on a is gone on b.
	require.Equal(t, http.StatusNoContent, a.do(t, ca, "DELETE", "/v1/meetings/"+m2.ID, a.key, nil).status)
	require.Equal(t, CodeMeetingNotFound, look("222222"))
}

func TestSourceKeys(t *testing.T) {
	leaktest.Check(t)
	require.Equal(t, "192.0.2.1", sourceKey(netip.MustParseAddr("192.0.2.1")))
	require.Equal(t, "2001:db8:1:2::/64", sourceKey(netip.MustParseAddr("2001:db8:1:2:3:4:5:6")))
	require.Equal(t, limitKey(netip.MustParseAddr("2001:db8:1:2::1")), limitKey(netip.MustParseAddr("2001:db8:1:2:ffff::9")))
	require.NotEqual(t, limitKey(netip.MustParseAddr("2001:db8:1:2::1")), limitKey(netip.MustParseAddr("2001:db8:1:3::1")))
}

// TestStoreDown: a store that fails answers 500 internal, as JSON.
func TestStoreDown(t *testing.T) {
	leaktest.Check(t)
	site := testSite()
	site.Zones = testZones(t)
	e := newEnv(t, "", site)
	m := e.createMeeting(t, map[string]any{"passcode": ""})
	require.NoError(t, e.st.Close())
	a, _ := e.lookup(t, e.client(t, ""), map[string]any{"meeting_id": m.ID, "name": "x"})
	require.Equal(t, http.StatusInternalServerError, a.status)
	require.Equal(t, CodeInternal, a.code())
	a = e.do(t, e.client(t, ""), "GET", "/v1/meetings", e.key, nil)
	require.Equal(t, CodeInternal, a.code())
}
