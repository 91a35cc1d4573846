package connect

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// LookupRequest is the body of POST /v1/lookup (docs/PROTOCOL.md, "Web
// tier (HTTPS 443)"; /work/wt/CONTRACT-lookup.md).
type LookupRequest struct {
	MeetingID    string   `json:"meeting_id"`
	Passcode     string   `json:"passcode,omitempty"`
	Name         string   `json:"name"`
	HostKey      string   `json:"host_key,omitempty"`
	PanelistKey  string   `json:"panelist_key,omitempty"` // webinars: makes a panelist
	Capabilities []string `json:"capabilities,omitempty"`
}

// LookupResponse is the web tier's answer to a lookup.
type LookupResponse struct {
	Meeting      LookupMeeting `json:"meeting"`
	Role         string        `json:"role"`
	Identity     string        `json:"identity"`
	JoinToken    string        `json:"join_token"`
	TokenExpires time.Time     `json:"token_expires"`
	Zones        []LookupZone  `json:"zones"`
	Tunnels      []Tunnel      `json:"tunnels"`
	WebClientURL string        `json:"web_client_url"`
	Client       LookupClient  `json:"client"`
}

// LookupMeeting describes the meeting.
type LookupMeeting struct {
	ID              string     `json:"id"`
	Topic           string     `json:"topic"`
	Type            string     `json:"type"`
	StartTime       *time.Time `json:"start_time,omitempty"`
	DurationMinutes int        `json:"duration_minutes"`
	// E2EE says the meeting is end-to-end encrypted: the client refuses a
	// joined that says another media protection.
	E2EE bool `json:"e2ee,omitempty"`
}

// LookupZone is one zone of the ranked list, best first.
type LookupZone struct {
	Name       string    `json:"name"`
	Healthy    bool      `json:"healthy"`
	CheckedAt  time.Time `json:"checked_at"`
	DistanceKM *float64  `json:"distance_km,omitempty"`
	ZCs        []ZC      `json:"zcs"`
}

// ZC is one zone controller: its address and how to verify it (exactly
// one of Fingerprint and CAPEM).
type ZC struct {
	Addr        string `json:"addr"`
	Fingerprint string `json:"fingerprint,omitempty"`
	CAPEM       string `json:"ca_pem,omitempty"`
	ServerName  string `json:"server_name,omitempty"`
}

// Tunnel is an HTTPS tunnel server (none exist yet).
type Tunnel struct {
	URL         string `json:"url"`
	Fingerprint string `json:"fingerprint"`
}

// LookupClient is what the web tier saw of the client.
type LookupClient struct {
	Address  string `json:"address"`
	ViaProxy bool   `json:"via_proxy"`
	Proxy    string `json:"proxy"`
}

// LookupError is a non-2xx answer of the web tier.
type LookupError struct {
	Status     int
	Code       string // bad-request, wrong-passcode, meeting-not-found, ...
	Message    string
	RetryAfter time.Duration
}

// Error returns "lookup: CODE: MESSAGE (HTTP n)".
func (e *LookupError) Error() string {
	s := "lookup: " + e.Code
	if e.Message != "" {
		s += ": " + e.Message
	}
	s += " (HTTP " + strconv.Itoa(e.Status) + ")"
	if e.RetryAfter > 0 {
		s += ", retry after " + e.RetryAfter.String()
	}
	return s
}

// maxLookupBody bounds the web tier's answer (a few KiB in practice).
const maxLookupBody = 1 << 20

// NormalizeMeetingID strips the spaces and dashes people type, and takes
// the last path segment of a URL (https://web.example/j/1234567890).
func NormalizeMeetingID(s string) string {
	s = strings.TrimSpace(s)
	if u, err := url.Parse(s); err == nil && u.Scheme != "" && u.Host != "" {
		p := strings.TrimRight(u.Path, "/")
		s = p[strings.LastIndex(p, "/")+1:]
		if s == "" {
			s = u.Query().Get("id")
		}
	}
	return strings.Map(func(r rune) rune {
		if r == ' ' || r == '-' {
			return -1
		}
		return r
	}, s)
}

// lookup runs POST /v1/lookup at web through dial (proxy-aware) and
// returns the answer and whether the request went through a proxy.
func lookup(ctx context.Context, web string, tc *tls.Config, d *dialer, req LookupRequest) (*LookupResponse, string, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return nil, "", err
	}
	u, err := url.Parse(strings.TrimRight(web, "/") + "/v1/lookup")
	if err != nil {
		return nil, "", err
	}
	if u.Scheme != "https" {
		return nil, "", fmt.Errorf("web tier URL %q: https:// required", web)
	}
	host := u.Host
	if u.Port() == "" {
		host = net.JoinHostPort(u.Hostname(), "443")
	}
	proxy := ""
	if d.proxies != nil {
		p, _, err := d.proxies.forAddr(host)
		if err != nil {
			return nil, "", err
		}
		if p != nil {
			proxy = p.Redacted()
		}
	}
	tc = tc.Clone()
	t := &http.Transport{
		// The dialer makes the CONNECT tunnel itself, so that the same
		// proxy decision (flag, environment, PAC) holds for every
		// connection of the process.
		DialContext:       d.DialContext,
		TLSClientConfig:   tc,
		ForceAttemptHTTP2: true,
		DisableKeepAlives: true,
	}
	defer t.CloseIdleConnections()
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), bytes.NewReader(body))
	if err != nil {
		return nil, proxy, err
	}
	hreq.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Transport: t}).Do(hreq)
	if err != nil {
		return nil, proxy, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxLookupBody))
	if err != nil {
		return nil, proxy, err
	}
	if resp.StatusCode/100 != 2 {
		le := &LookupError{Status: resp.StatusCode, Code: "http-" + strconv.Itoa(resp.StatusCode)}
		var e struct {
			Error struct {
				Code    string `json:"code"`
				Message string `json:"message"`
			} `json:"error"`
		}
		if json.Unmarshal(b, &e) == nil && e.Error.Code != "" {
			le.Code, le.Message = e.Error.Code, e.Error.Message
		}
		if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil {
			le.RetryAfter = time.Duration(s) * time.Second
		}
		return nil, proxy, le
	}
	var out LookupResponse
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, proxy, fmt.Errorf("lookup: bad answer: %w", err)
	}
	if out.JoinToken == "" || out.Meeting.ID == "" {
		return nil, proxy, fmt.Errorf("lookup: answer without meeting or join token")
	}
	return &out, proxy, nil
}
