package web

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"net/netip"
	"slices"
	"time"

	"github.com/openmmr/mmr/control/token"
	"github.com/openmmr/mmr/web/geo"
	"github.com/openmmr/mmr/web/store"
)

// LookupRequest is the body of POST /v1/lookup.
type LookupRequest struct {
	MeetingID    string   `json:"meeting_id"`
	Passcode     string   `json:"passcode"`
	Name         string   `json:"name"`
	Capabilities []string `json:"capabilities"`
	HostKey      string   `json:"host_key"`     // optional: makes the participant the host
	PanelistKey  string   `json:"panelist_key"` // optional, webinars: makes a panelist (may publish)
}

// DecodeLookup decodes and checks a lookup body (the handler's decoder,
// and the fuzz target's).
func DecodeLookup(r io.Reader) (LookupRequest, *apiError) {
	var req LookupRequest
	if e := decodeJSON(r, MaxLookupBody, &req); e != nil {
		return req, e
	}
	return req, checkLookup(&req)
}

func checkLookup(req *LookupRequest) *apiError {
	bad := func(msg string) *apiError { return errorf(http.StatusBadRequest, CodeBadRequest, msg) }
	if !validMeetingID(req.MeetingID) {
		return errorf(http.StatusBadRequest, CodeInvalidMeetingID, "meeting_id must be 10 or 11 digits (without spaces or dashes)")
	}
	if !validText(req.Name, 1, maxName) {
		return bad("name: 1..64 bytes of UTF-8, no control characters")
	}
	if req.Passcode != "" && !validSecret(req.Passcode, minPasscode, maxPasscode) {
		return bad("passcode: 1..32 printable ASCII characters")
	}
	for _, k := range []string{req.HostKey, req.PanelistKey} {
		if k != "" && !validSecret(k, 1, maxKey) {
			return bad("host_key, panelist_key: at most 32 printable ASCII characters")
		}
	}
	if len(req.Capabilities) > maxCapabilities {
		return bad("capabilities: at most 16")
	}
	for _, c := range req.Capabilities {
		if !validText(c, 0, maxCapability) {
			return bad("capabilities: each at most 32 bytes of UTF-8")
		}
	}
	return nil
}

// The lookup answer (docs/PROTOCOL.md, "Web tier").
type (
	lookupJSON struct {
		Meeting      lookupMeetingJSON `json:"meeting"`
		Role         string            `json:"role"`
		Identity     string            `json:"identity"`
		JoinToken    string            `json:"join_token"`
		TokenExpires string            `json:"token_expires"`
		Zones        []zoneJSON        `json:"zones"`
		Tunnels      []tunnelJSON      `json:"tunnels"`
		WebClientURL string            `json:"web_client_url"`
		Client       clientInfo        `json:"client"`
	}
	lookupMeetingJSON struct {
		ID              string `json:"id"`
		Topic           string `json:"topic"`
		Type            string `json:"type"`
		StartTime       string `json:"start_time,omitempty"`
		DurationMinutes int    `json:"duration_minutes"`
		// E2EE: the meeting is end-to-end encrypted; a client MUST then
		// see media_protection "e2ee" in joined, and refuse anything else
		// (a downgrade).
		E2EE bool `json:"e2ee"`
	}
	zoneJSON struct {
		Name       string   `json:"name"`
		Healthy    bool     `json:"healthy"`
		CheckedAt  string   `json:"checked_at,omitempty"`
		DistanceKM *float64 `json:"distance_km,omitempty"`
		ZCs        []zcJSON `json:"zcs"`
	}
	zcJSON struct {
		Addr        string `json:"addr"`
		Fingerprint string `json:"fingerprint,omitempty"`
		CAPEM       string `json:"ca_pem,omitempty"`
		ServerName  string `json:"server_name,omitempty"`
	}
	tunnelJSON struct {
		URL         string `json:"url"`
		Fingerprint string `json:"fingerprint,omitempty"`
	}
)

// sourceKey is the lockout key of a source: the address, or its /64 for
// IPv6 (one subscriber's allocation: otherwise a /64 holder would have
// 2^64 sources).
func sourceKey(a netip.Addr) string {
	if a.Is6() && !a.Is4In6() {
		p, _ := a.Prefix(64)
		return p.String()
	}
	return a.String()
}

// limitKey is the rate limiter's key of a source: as sourceKey, IPv6
// addresses count by their /64.
func limitKey(a netip.Addr) netip.Addr {
	if a.Is6() && !a.Is4In6() {
		p, _ := a.Prefix(64)
		return p.Addr()
	}
	return a
}

func (s *Server) handleLookup(w http.ResponseWriter, r *http.Request) {
	now := s.now()
	ci := s.clientOf(r)
	if ok, wait := s.limiter.allow(limitKey(ci.addr), now); !ok {
		e := errorf(http.StatusTooManyRequests, CodeRateLimited, "too many lookups from this address; slow down")
		e.retryAfter = wait
		s.writeError(w, e)
		return
	}
	var req LookupRequest
	if e := decodeBody(w, r, MaxLookupBody, &req); e != nil {
		s.writeError(w, e)
		return
	}
	if e := checkLookup(&req); e != nil {
		s.writeError(w, e)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), requestTimeout)
	defer cancel()
	out, e := s.lookup(ctx, &req, ci, now)
	if e != nil {
		s.writeError(w, e)
		return
	}
	s.lookups.Add(1)
	writeJSON(w, http.StatusOK, out)
}

func lockedOut(until, now time.Time, what string) *apiError {
	e := errorf(http.StatusTooManyRequests, CodeLockedOut, what+" is locked after too many failed attempts; try again later")
	e.retryAfter = until.Sub(now)
	return e
}

// lookup is the lookup after decoding: lockouts, meeting, secrets, role,
// token, zones.
func (s *Server) lookup(ctx context.Context, req *LookupRequest, ci clientInfo, now time.Time) (*lookupJSON, *apiError) {
	src := sourceKey(ci.addr)
	if until, err := s.st.LockedUntil(ctx, scopeSource, src, now); err != nil {
		return nil, s.internalErr("lockout", err)
	} else if !until.IsZero() {
		return nil, lockedOut(until, now, "this address")
	}
	m, err := s.st.GetMeeting(ctx, req.MeetingID)
	if errors.Is(err, store.ErrNotFound) {
		if e := s.fail(ctx, "", src, now); e != nil {
			return nil, e
		}
		return nil, errorf(http.StatusNotFound, CodeMeetingNotFound, "no meeting with this ID")
	}
	if err != nil {
		return nil, s.internalErr("meeting", err)
	}
	if m.Ended {
		return nil, errorf(http.StatusGone, CodeMeetingEnded, "the meeting has ended")
	}
	// The meeting's lockout guards every secret of it: the passcode, and
	// the host and panelist keys (also in a meeting without passcode).
	if m.PasscodeHash != "" || req.HostKey != "" || req.PanelistKey != "" {
		if until, err := s.st.LockedUntil(ctx, scopeMeeting, m.ID, now); err != nil {
			return nil, s.internalErr("lockout", err)
		} else if !until.IsZero() {
			return nil, lockedOut(until, now, "this meeting's passcode")
		}
	}
	if m.PasscodeHash != "" {
		if req.Passcode == "" {
			return nil, errorf(http.StatusUnauthorized, CodePasscodeRequired, "this meeting needs a passcode")
		}
		ok, err := s.verify.verify(m.PasscodeHash, req.Passcode)
		if err != nil {
			return nil, s.internalErr("passcode", err)
		}
		if !ok {
			if e := s.fail(ctx, m.ID, src, now); e != nil {
				return nil, e
			}
			return nil, errorf(http.StatusUnauthorized, CodeWrongPasscode, "wrong passcode")
		}
	}
	role := token.Participant
	if m.Type == store.TypeWebinar {
		role = token.Viewer
	}
	for _, k := range []struct {
		given, hash string
		role        token.Role
	}{{req.PanelistKey, m.PanelistKeyHash, token.Participant}, {req.HostKey, m.HostKeyHash, token.Host}} {
		if k.given == "" {
			continue
		}
		ok := false
		if k.hash != "" {
			if ok, err = s.verify.verify(k.hash, k.given); err != nil {
				return nil, s.internalErr("key", err)
			}
		}
		if !ok {
			if e := s.fail(ctx, m.ID, src, now); e != nil {
				return nil, e
			}
			return nil, errorf(http.StatusUnauthorized, CodeWrongHostKey, "wrong host or panelist key")
		}
		role = k.role
	}
	identity, id, err := s.clientID()
	if err != nil {
		return nil, s.internalErr("identity", err)
	}
	exp := now.Add(s.cfg.TokenTTL.D()).Truncate(time.Second)
	tok, err := token.Mint(s.secret, token.Claims{Meeting: m.ID, Identity: identity, Name: req.Name, ID: id, Role: role, Expiry: exp,
		E2EE: m.E2EE, Version: token.Version3})
	if err != nil {
		return nil, s.internalErr("token", err)
	}
	out := &lookupJSON{
		Meeting:  lookupMeetingJSON{ID: m.ID, Topic: m.Topic, Type: m.Type, DurationMinutes: m.DurationMinutes, E2EE: m.E2EE},
		Role:     role.String(),
		Identity: identity, JoinToken: tok, TokenExpires: exp.UTC().Format(time.RFC3339),
		Zones: s.rankZones(ci.addr, m.Zones), Tunnels: s.tunnels,
		WebClientURL: s.webClientURL(m.ID), Client: ci,
	}
	if !m.StartTime.IsZero() {
		out.Meeting.StartTime = m.StartTime.Format(time.RFC3339)
	}
	return out, nil
}

// fail counts a failure against the source and, unless meeting is "",
// against the meeting (both, always: the meeting's counter must not depend
// on which source tried). It returns an error only if the store failed.
func (s *Server) fail(ctx context.Context, meeting, src string, now time.Time) *apiError {
	if _, err := s.st.RecordFailure(ctx, scopeSource, src, now, s.source); err != nil {
		return s.internalErr("lockout", err)
	}
	if meeting != "" {
		if _, err := s.st.RecordFailure(ctx, scopeMeeting, meeting, now, s.meeting); err != nil {
			return s.internalErr("lockout", err)
		}
	}
	return nil
}

func (s *Server) internalErr(what string, err error) *apiError {
	s.log.Error("web: lookup: "+what, "err", err)
	return errorf(http.StatusInternalServerError, CodeInternal, "internal error")
}

// rankZones ranks the zones for a client at addr: Geo-IP (web/geo), then
// the meeting's zone affinity moved to the front (keeping their rank), then
// zones without an answering ZC moved to the end (keeping their rank).
func (s *Server) rankZones(addr netip.Addr, affinity []string) []zoneJSON {
	loc, known := s.geo.Locate(addr)
	ranked := s.ranker.Rank(loc, known)
	if len(affinity) > 0 {
		in := func(i int) bool { return slices.Contains(affinity, s.zones[i].Name) }
		pref := make([]geo.Ranked, 0, len(ranked))
		for _, r := range ranked {
			if in(r.Zone) {
				pref = append(pref, r)
			}
		}
		for _, r := range ranked {
			if !in(r.Zone) {
				pref = append(pref, r)
			}
		}
		ranked = pref
	}
	health := s.health.Status()
	out := make([]zoneJSON, 0, len(ranked))
	var tail []zoneJSON
	for _, r := range ranked {
		h := health[r.Zone]
		z := zoneJSON{Name: s.zones[r.Zone].Name, Healthy: h.Healthy, ZCs: s.zcsJSON[r.Zone]}
		if h.Checked {
			z.CheckedAt = h.CheckedAt.Format(time.RFC3339)
		}
		if r.HasDistance {
			d := r.DistanceKM
			z.DistanceKM = &d
		}
		if z.Healthy {
			out = append(out, z)
		} else {
			tail = append(tail, z)
		}
	}
	return append(out, tail...)
}

// newIdentity returns a lookup's identity ("p-" and 16 hex digits) and
// token ID, both random.
func newIdentity() (string, [token.IDSize]byte, error) {
	var b [8 + token.IDSize]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", [token.IDSize]byte{}, err
	}
	var id [token.IDSize]byte
	copy(id[:], b[8:])
	return "p-" + hex.EncodeToString(b[:8]), id, nil
}
