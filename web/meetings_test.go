package web

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/openmmr/mmr/internal/leaktest"
)

func TestMeetingsAPI(t *testing.T) {
	leaktest.Check(t)
	site := testSite()
	site.Zones = testZones(t)
	e := newEnv(t, "", site)
	c := e.client(t, "")

	// Authentication.
	for _, key := range []string{"", "omk_nope", "Basic x"} {
		a := e.do(t, c, "GET", "/v1/meetings", key, nil)
		require.Equal(t, http.StatusUnauthorized, a.status)
		require.Equal(t, CodeUnauthorized, a.code())
	}

	// Create: scheduled webinar with given secrets, and an instant meeting
	// with generated ones.
	m := e.createMeeting(t, map[string]any{"id": "1234567890", "topic": "Town hall", "type": "webinar", "passcode": "246810",
		"host_key": "hostkey1", "panelist_key": "panel99", "start_time": "2026-12-01T09:00:00+01:00", "duration_minutes": 90, "zones": []string{"sin"}})
	require.Equal(t, "1234567890", m.ID)
	require.Equal(t, "2026-12-01T08:00:00Z", m.StartTime)
	require.Equal(t, "246810", m.Passcode, "shown once, at create")
	require.True(t, m.HasPasscode && m.HasHostKey && m.HasPanelistKey)
	require.Equal(t, []string{"sin"}, m.Zones)
	inst := e.createMeeting(t, map[string]any{})
	require.Len(t, inst.ID, 10)
	require.Len(t, inst.Passcode, 6, "generated passcode")
	require.Len(t, inst.HostKey, 6, "generated host key")
	require.Equal(t, "meeting", inst.Type)
	require.Empty(t, inst.StartTime)
	open := e.createMeeting(t, map[string]any{"passcode": "", "host_key": ""})
	require.False(t, open.HasPasscode || open.HasHostKey)

	// Read: secrets never shown again.
	a := e.do(t, c, "GET", "/v1/meetings/1234567890", e.key, nil)
	require.Equal(t, http.StatusOK, a.status)
	require.NotContains(t, string(a.body), "246810")
	require.NotContains(t, string(a.body), "hostkey1")
	var got meetingJSON
	a.decode(t, &got)
	require.Equal(t, "Town hall", got.Topic)
	require.EqualValues(t, 1, got.Version)

	// Update.
	a = e.do(t, c, "PATCH", "/v1/meetings/1234567890", e.key, map[string]any{"topic": "Renamed", "passcode": ""})
	require.Equal(t, http.StatusOK, a.status, string(a.body))
	a.decode(t, &got)
	require.Equal(t, "Renamed", got.Topic)
	require.False(t, got.HasPasscode)
	require.True(t, got.HasHostKey, "untouched")
	require.EqualValues(t, 2, got.Version)

	// List, paged.
	a = e.do(t, c, "GET", "/v1/meetings?limit=2", e.key, nil)
	require.Equal(t, http.StatusOK, a.status)
	var page listJSON
	a.decode(t, &page)
	require.Len(t, page.Meetings, 2)
	require.NotEmpty(t, page.Next)
	a = e.do(t, c, "GET", "/v1/meetings?limit=2&after="+page.Next, e.key, nil)
	a.decode(t, &page)
	require.Len(t, page.Meetings, 1)
	require.Empty(t, page.Next)

	// Errors, each with its code; nothing is written by a refused request.
	tests := []struct {
		name, method, path string
		body               any
		status             int
		code               string
	}{
		{"taken id", "POST", "/v1/meetings", map[string]any{"id": "1234567890"}, 409, CodeMeetingExists},
		{"short id", "POST", "/v1/meetings", map[string]any{"id": "123"}, 400, CodeInvalidMeetingID},
		{"unknown field", "POST", "/v1/meetings", `{"id":"2234567890","topik":"x"}`, 400, CodeBadRequest},
		{"bad type", "POST", "/v1/meetings", map[string]any{"id": "2234567890", "type": "party"}, 400, CodeBadRequest},
		{"unknown zone", "POST", "/v1/meetings", map[string]any{"id": "2234567890", "zones": []string{"mars"}}, 400, CodeBadRequest},
		{"bad start", "POST", "/v1/meetings", map[string]any{"id": "2234567890", "start_time": "tomorrow"}, 400, CodeBadRequest},
		{"long duration", "POST", "/v1/meetings", map[string]any{"id": "2234567890", "duration_minutes": 20000}, 400, CodeBadRequest},
		{"short host key", "POST", "/v1/meetings", map[string]any{"id": "2234567890", "host_key": "12"}, 400, CodeBadRequest},
		{"control char topic", "POST", "/v1/meetings", map[string]any{"id": "2234567890", "topic": "a\x00b"}, 400, CodeBadRequest},
		{"two objects", "POST", "/v1/meetings", `{"id":"2234567890"}{}`, 400, CodeBadRequest},
		{"not json", "POST", "/v1/meetings", `id=2234567890`, 400, CodeBadRequest},
		{"too large", "POST", "/v1/meetings", `{"topic":"` + strings.Repeat("x", MaxAdminBody) + `"}`, 413, CodeTooLarge},
		{"ended at create", "POST", "/v1/meetings", map[string]any{"id": "2234567890", "ended": true}, 400, CodeBadRequest},
		{"id change", "PATCH", "/v1/meetings/1234567890", map[string]any{"id": "2234567890"}, 400, CodeBadRequest},
		{"get missing", "GET", "/v1/meetings/9999999999", nil, 404, CodeMeetingNotFound},
		{"get bad id", "GET", "/v1/meetings/12ab567890", nil, 400, CodeInvalidMeetingID},
		{"patch missing", "PATCH", "/v1/meetings/9999999999", map[string]any{"topic": "x"}, 404, CodeMeetingNotFound},
		{"method", "PUT", "/v1/meetings/1234567890", `{}`, 405, CodeMethod},
		{"list limit", "GET", "/v1/meetings?limit=0", nil, 400, CodeBadRequest},
		{"no route", "GET", "/v2/nothing", nil, 404, CodeNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := e.do(t, c, tt.method, tt.path, e.key, tt.body)
			require.Equal(t, tt.status, a.status, string(a.body))
			require.Equal(t, tt.code, a.code())
		})
	}
	a = e.do(t, c, "GET", "/v1/meetings/2234567890", e.key, nil)
	require.Equal(t, http.StatusNotFound, a.status, "no refused create wrote anything")
	require.Positive(t, e.srv.Stats().Refused[CodeBadRequest])

	// Content-Type is required.
	req, _ := http.NewRequest("POST", e.ts.URL+"/v1/meetings", strings.NewReader(`{}`))
	req.Header.Set("Authorization", "Bearer "+e.key)
	req.Header.Set("Content-Type", "text/plain")
	resp, err := c.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusUnsupportedMediaType, resp.StatusCode)

	// Delete.
	a = e.do(t, c, "DELETE", "/v1/meetings/1234567890", e.key, nil)
	require.Equal(t, http.StatusNoContent, a.status)
	a = e.do(t, c, "DELETE", "/v1/meetings/1234567890", e.key, nil)
	require.Equal(t, CodeMeetingNotFound, a.code())

	// The browser pages.
	resp, err = c.Get(e.ts.URL + "/")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "HTTP/2.0", resp.Proto, "h2 over TLS")
	require.Contains(t, resp.Header.Get("Content-Type"), "text/html")
	req, _ = http.NewRequest("GET", e.ts.URL+"/j/1234567890", nil)
	req.Host = "web.example:8443"
	resp, err = c.Do(req)
	require.NoError(t, err)
	html, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, string(html), "-passcode PASSCODE 1234567890")
	require.Contains(t, string(html), "-web https://web.example:8443 ")
	a = e.do(t, c, "GET", "/j/12", "", nil)
	require.Equal(t, CodeInvalidMeetingID, a.code())
}

// TestSlowClient: a client that sends half a request line and then nothing
// is disconnected by ReadHeaderTimeout; the server's other clients are
// served meanwhile.
func TestSlowClient(t *testing.T) {
	leaktest.Check(t)
	site := testSite()
	site.Zones = testZones(t)
	e := newEnv(t, "", site)
	hs := e.srv.HTTPServer()
	require.Equal(t, ReadHeaderTimeout, hs.ReadHeaderTimeout)
	require.Equal(t, ReadTimeout, hs.ReadTimeout)
	require.Equal(t, WriteTimeout, hs.WriteTimeout)
	require.Equal(t, IdleTimeout, hs.IdleTimeout)
	require.Equal(t, MaxHeaderBytes, hs.MaxHeaderBytes)

	tc := e.ts.Client().Transport.(*http.Transport).TLSClientConfig.Clone()
	tc.NextProtos = []string{"http/1.1"}
	c, err := tls.Dial("tcp", e.ts.Listener.Addr().String(), tc)
	require.NoError(t, err)
	defer c.Close()
	_, err = io.WriteString(c, "POST /v1/lookup HTTP/1.1\r\nHost: x\r\n")
	require.NoError(t, err)
	start := time.Now()
	a := e.do(t, e.client(t, ""), "GET", "/v1/healthz", "", nil)
	require.Equal(t, http.StatusOK, a.status, "others are served")
	require.NoError(t, c.SetReadDeadline(time.Now().Add(ReadHeaderTimeout+20*time.Second)))
	_, err = io.ReadAll(c) // the server closes: EOF (nil) or a reset
	var ne net.Error
	require.False(t, errors.As(err, &ne) && ne.Timeout(), "the server closed the connection, not our deadline: %v", err)
	require.GreaterOrEqual(t, time.Since(start), ReadHeaderTimeout-time.Second)
}
