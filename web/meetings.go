package web

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/openmmr/mmr/web/store"
)

// admin authenticates the meetings API: "Authorization: Bearer KEY", an
// API key created with `web apikey create` (stored as its SHA-256).
func (s *Server) admin(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		auth := r.Header.Get("Authorization")
		key, ok := strings.CutPrefix(auth, "Bearer ")
		if !ok || !strings.HasPrefix(key, APIKeyPrefix) || len(key) > 128 {
			s.writeError(w, errorf(http.StatusUnauthorized, CodeUnauthorized, "an API key is required (Authorization: Bearer omk_...)"))
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), requestTimeout)
		defer cancel()
		if _, err := s.st.APIKeyByHash(ctx, HashAPIKey(key)); err != nil {
			if errors.Is(err, store.ErrNotFound) {
				s.writeError(w, errorf(http.StatusUnauthorized, CodeUnauthorized, "unknown API key"))
			} else {
				s.internal(w, "api key", err)
			}
			return
		}
		h(w, r)
	}
}

func (s *Server) internal(w http.ResponseWriter, what string, err error) {
	s.log.Error("web: "+what, "err", err)
	s.writeError(w, errorf(http.StatusInternalServerError, CodeInternal, "internal error"))
}

// meetingJSON is a meeting as the admin API shows it. Secrets are never
// shown, except right after create or update set them (Passcode, HostKey,
// PanelistKey), since only their hashes are stored.
type meetingJSON struct {
	ID              string   `json:"id"`
	Topic           string   `json:"topic"`
	Type            string   `json:"type"`
	StartTime       string   `json:"start_time,omitempty"`
	DurationMinutes int      `json:"duration_minutes"`
	Zones           []string `json:"zones"`
	E2EE            bool     `json:"e2ee"`
	HasPasscode     bool     `json:"has_passcode"`
	HasHostKey      bool     `json:"has_host_key"`
	HasPanelistKey  bool     `json:"has_panelist_key"`
	Ended           bool     `json:"ended"`
	JoinURL         string   `json:"join_url"`
	CreatedAt       string   `json:"created_at"`
	UpdatedAt       string   `json:"updated_at"`
	Version         int64    `json:"version"`
	Passcode        string   `json:"passcode,omitempty"`
	HostKey         string   `json:"host_key,omitempty"`
	PanelistKey     string   `json:"panelist_key,omitempty"`
}

func (s *Server) meetingOut(m store.Meeting) meetingJSON {
	j := meetingJSON{ID: m.ID, Topic: m.Topic, Type: m.Type, DurationMinutes: m.DurationMinutes, Zones: m.Zones, E2EE: m.E2EE,
		HasPasscode: m.PasscodeHash != "", HasHostKey: m.HostKeyHash != "", HasPanelistKey: m.PanelistKeyHash != "",
		Ended: m.Ended, JoinURL: s.webClientURL(m.ID), CreatedAt: m.CreatedAt.Format(time.RFC3339), UpdatedAt: m.UpdatedAt.Format(time.RFC3339), Version: m.Version}
	if j.Zones == nil {
		j.Zones = []string{}
	}
	if !m.StartTime.IsZero() {
		j.StartTime = m.StartTime.Format(time.RFC3339)
	}
	return j
}

// webClientURL is the web client's URL of meeting id.
func (s *Server) webClientURL(id string) string {
	if s.cfg.WebClientURL != "" {
		return s.cfg.WebClientURL + id
	}
	return "/j/" + id
}

// MeetingRequest is the body of create (POST /v1/meetings) and update
// (PATCH /v1/meetings/{id}). Absent fields: defaults on create, unchanged
// on update. Passcode, HostKey and PanelistKey: absent on create means
// generated (6 random digits, shown once in the answer); "" means none.
type MeetingRequest struct {
	ID              *string   `json:"id"` // create only; default: random
	Topic           *string   `json:"topic"`
	Type            *string   `json:"type"`
	Passcode        *string   `json:"passcode"`
	HostKey         *string   `json:"host_key"`
	PanelistKey     *string   `json:"panelist_key"`
	StartTime       *string   `json:"start_time"` // RFC 3339; "" = instant meeting
	DurationMinutes *int      `json:"duration_minutes"`
	Zones           *[]string `json:"zones"`
	Ended           *bool     `json:"ended"` // update only
	// E2EE makes the meeting end-to-end encrypted (create only; default
	// false): its join tokens carry the E2EE flag. Not for webinars (E2EE
	// meetings have no viewers).
	E2EE *bool `json:"e2ee"`
}

// DecodeMeetingRequest decodes and checks a create or update body against
// the zones known (create says which). It is what the handlers use; the
// fuzz target drives it directly.
func (s *Server) DecodeMeetingRequest(r interface{ Read([]byte) (int, error) }, create bool) (MeetingRequest, *apiError) {
	var req MeetingRequest
	if e := decodeJSON(r, MaxAdminBody, &req); e != nil {
		return req, e
	}
	return req, s.checkMeetingRequest(&req, create)
}

func (s *Server) checkMeetingRequest(req *MeetingRequest, create bool) *apiError {
	bad := func(msg string) *apiError { return errorf(http.StatusBadRequest, CodeBadRequest, msg) }
	if req.ID != nil {
		if !create {
			return bad("id cannot change")
		}
		if !validMeetingID(*req.ID) {
			return errorf(http.StatusBadRequest, CodeInvalidMeetingID, "id must be 10 or 11 digits")
		}
	}
	if req.Ended != nil && create {
		return bad("ended is for updates")
	}
	if req.E2EE != nil && !create {
		return bad("e2ee cannot change: it is fixed when the meeting is created")
	}
	if req.E2EE != nil && *req.E2EE && req.Type != nil && *req.Type == store.TypeWebinar {
		return bad("e2ee: a webinar cannot be end-to-end encrypted (E2EE meetings have no viewers)")
	}
	if req.Topic != nil && !validText(*req.Topic, 0, maxTopic) {
		return bad("topic: at most 200 bytes of UTF-8, no control characters")
	}
	if req.Type != nil && *req.Type != store.TypeMeeting && *req.Type != store.TypeWebinar {
		return bad(`type: "meeting" or "webinar"`)
	}
	if req.Passcode != nil && *req.Passcode != "" && !validSecret(*req.Passcode, minPasscode, maxPasscode) {
		return bad("passcode: 1..32 printable ASCII characters")
	}
	for _, k := range []*string{req.HostKey, req.PanelistKey} {
		if k != nil && *k != "" && !validSecret(*k, minKey, maxKey) {
			return bad("host_key, panelist_key: 6..32 printable ASCII characters")
		}
	}
	if req.StartTime != nil {
		if _, ok := parseTime(*req.StartTime); !ok {
			return bad("start_time: RFC 3339, e.g. 2026-12-01T09:00:00Z")
		}
	}
	if req.DurationMinutes != nil && (*req.DurationMinutes < 0 || *req.DurationMinutes > maxDuration) {
		return bad("duration_minutes: 0..10080")
	}
	if req.Zones != nil {
		if len(*req.Zones) > maxZones {
			return bad("zones: at most 16")
		}
		for _, z := range *req.Zones {
			if _, ok := s.zoneIdx[z]; !ok {
				return bad("zones: no zone " + strconv.Quote(z))
			}
		}
	}
	return nil
}

// apply sets m's fields from req, hashing new secrets; it returns the
// secrets set in clear, for the answer.
func (s *Server) apply(m *store.Meeting, req *MeetingRequest, create bool) (out meetingSecrets, err error) {
	if req.Topic != nil {
		m.Topic = *req.Topic
	}
	if req.Type != nil {
		m.Type = *req.Type
	}
	if req.E2EE != nil && create {
		m.E2EE = *req.E2EE
	}
	set := func(p *string, hash *string, shown *string) error {
		if p == nil && !create {
			return nil
		}
		v := ""
		if p == nil { // create without it: generate
			if v, err = randomDigits(6); err != nil {
				return err
			}
		} else {
			v = *p
		}
		*hash, *shown = "", v
		if v != "" {
			if *hash, err = HashSecretWith(s.argon, v); err != nil {
				return err
			}
		}
		return nil
	}
	if err := set(req.Passcode, &m.PasscodeHash, &out.passcode); err != nil {
		return out, err
	}
	if err := set(req.HostKey, &m.HostKeyHash, &out.hostKey); err != nil {
		return out, err
	}
	if m.Type == store.TypeWebinar {
		if err := set(req.PanelistKey, &m.PanelistKeyHash, &out.panelistKey); err != nil {
			return out, err
		}
	} else {
		m.PanelistKeyHash = ""
	}
	if req.StartTime != nil {
		m.StartTime, _ = parseTime(*req.StartTime)
	}
	if req.DurationMinutes != nil {
		m.DurationMinutes = *req.DurationMinutes
	}
	if req.Zones != nil {
		m.Zones = append([]string(nil), *req.Zones...)
		if len(m.Zones) == 0 {
			m.Zones = nil
		}
	}
	if req.Ended != nil {
		m.Ended = *req.Ended
	}
	return out, nil
}

type meetingSecrets struct{ passcode, hostKey, panelistKey string }

func (j *meetingJSON) show(sec meetingSecrets) {
	j.Passcode, j.HostKey, j.PanelistKey = sec.passcode, sec.hostKey, sec.panelistKey
}

// createTries bounds the retries on a random ID that is taken: with 9x10^9
// IDs, a collision is already rare at millions of meetings.
const createTries = 5

func (s *Server) handleCreate(w http.ResponseWriter, r *http.Request) {
	var req MeetingRequest
	if e := decodeBody(w, r, MaxAdminBody, &req); e != nil {
		s.writeError(w, e)
		return
	}
	if e := s.checkMeetingRequest(&req, true); e != nil {
		s.writeError(w, e)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), requestTimeout)
	defer cancel()
	m, sec, e := s.create(ctx, &req)
	if e != nil {
		s.writeError(w, e)
		return
	}
	out := s.meetingOut(m)
	out.show(sec)
	w.Header().Set("Location", "/v1/meetings/"+m.ID)
	writeJSON(w, http.StatusCreated, out)
}

// create makes the meeting of a checked request.
func (s *Server) create(ctx context.Context, req *MeetingRequest) (store.Meeting, meetingSecrets, *apiError) {
	now := s.now().UTC().Truncate(time.Millisecond)
	m := store.Meeting{Topic: "Meeting", Type: store.TypeMeeting, CreatedAt: now, UpdatedAt: now, Version: 1}
	sec, err := s.apply(&m, req, true)
	if err != nil {
		return m, sec, s.internalErr("create", err)
	}
	for try := 0; ; try++ {
		if req.ID != nil {
			m.ID = *req.ID
		} else if m.ID, err = randomDigits(10); err != nil {
			return m, sec, s.internalErr("create", err)
		}
		err = s.st.CreateMeeting(ctx, m)
		if err == nil {
			return m, sec, nil
		}
		if !errors.Is(err, store.ErrExists) {
			return m, sec, s.internalErr("create", err)
		}
		if req.ID != nil || try == createTries {
			return m, sec, errorf(http.StatusConflict, CodeMeetingExists, "a meeting with ID "+m.ID+" exists")
		}
	}
}

// Created is a meeting CreateMeeting made, with its secrets in clear
// (shown this once).
type Created struct {
	ID, Passcode, HostKey, PanelistKey string
}

// CreateMeeting creates a meeting as POST /v1/meetings does (for
// operators' tools, e.g. the one-box node's first meeting).
func (s *Server) CreateMeeting(ctx context.Context, req MeetingRequest) (Created, error) {
	if e := s.checkMeetingRequest(&req, true); e != nil {
		return Created{}, e
	}
	m, sec, e := s.create(ctx, &req)
	if e != nil {
		return Created{}, e
	}
	return Created{ID: m.ID, Passcode: sec.passcode, HostKey: sec.hostKey, PanelistKey: sec.panelistKey}, nil
}

// pathID returns the {id} of the route, or writes the error.
func (s *Server) pathID(w http.ResponseWriter, r *http.Request) (string, bool) {
	id := r.PathValue("id")
	if !validMeetingID(id) {
		s.writeError(w, errorf(http.StatusBadRequest, CodeInvalidMeetingID, "meeting IDs are 10 or 11 digits"))
		return "", false
	}
	return id, true
}

func (s *Server) storeError(w http.ResponseWriter, id string, err error) {
	switch {
	case errors.Is(err, store.ErrNotFound):
		s.writeError(w, errorf(http.StatusNotFound, CodeMeetingNotFound, "no meeting "+id))
	case errors.Is(err, store.ErrConflict):
		s.writeError(w, errorf(http.StatusConflict, CodeConflict, "the meeting kept changing; try again"))
	default:
		s.internal(w, "store", err)
	}
}

func (s *Server) handleGet(w http.ResponseWriter, r *http.Request) {
	id, ok := s.pathID(w, r)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), requestTimeout)
	defer cancel()
	m, err := s.st.GetMeeting(ctx, id)
	if err != nil {
		s.storeError(w, id, err)
		return
	}
	writeJSON(w, http.StatusOK, s.meetingOut(m))
}

// updateTries bounds optimistic-concurrency retries of one update.
const updateTries = 5

func (s *Server) handleUpdate(w http.ResponseWriter, r *http.Request) {
	id, ok := s.pathID(w, r)
	if !ok {
		return
	}
	var req MeetingRequest
	if e := decodeBody(w, r, MaxAdminBody, &req); e != nil {
		s.writeError(w, e)
		return
	}
	if e := s.checkMeetingRequest(&req, false); e != nil {
		s.writeError(w, e)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), requestTimeout)
	defer cancel()
	var err error
	for range updateTries {
		var m store.Meeting
		if m, err = s.st.GetMeeting(ctx, id); err != nil {
			break
		}
		if m.E2EE && req.Type != nil && *req.Type == store.TypeWebinar {
			s.writeError(w, errorf(http.StatusBadRequest, CodeBadRequest, "type: an end-to-end encrypted meeting cannot become a webinar"))
			return
		}
		var sec meetingSecrets
		if sec, err = s.apply(&m, &req, false); err != nil {
			break
		}
		m.UpdatedAt = s.now().UTC().Truncate(time.Millisecond)
		if m.Version, err = s.st.UpdateMeeting(ctx, m); err == nil {
			out := s.meetingOut(m)
			out.show(sec)
			writeJSON(w, http.StatusOK, out)
			return
		}
		if !errors.Is(err, store.ErrConflict) {
			break
		}
	}
	s.storeError(w, id, err)
}

func (s *Server) handleDelete(w http.ResponseWriter, r *http.Request) {
	id, ok := s.pathID(w, r)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), requestTimeout)
	defer cancel()
	if err := s.st.DeleteMeeting(ctx, id); err != nil {
		s.storeError(w, id, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

type listJSON struct {
	Meetings []meetingJSON `json:"meetings"`
	Next     string        `json:"next"` // pass as ?after= for the next page; "" at the end
}

func (s *Server) handleList(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	after := q.Get("after")
	if after != "" && !validMeetingID(after) {
		s.writeError(w, errorf(http.StatusBadRequest, CodeInvalidMeetingID, "after: a meeting ID"))
		return
	}
	limit := defListLimit
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > maxListLimit {
			s.writeError(w, errorf(http.StatusBadRequest, CodeBadRequest, "limit: 1..500"))
			return
		}
		limit = n
	}
	ctx, cancel := context.WithTimeout(r.Context(), requestTimeout)
	defer cancel()
	ms, err := s.st.ListMeetings(ctx, after, limit)
	if err != nil {
		s.internal(w, "list", err)
		return
	}
	out := listJSON{Meetings: make([]meetingJSON, 0, len(ms))}
	for _, m := range ms {
		out.Meetings = append(out.Meetings, s.meetingOut(m))
	}
	if len(ms) == limit {
		out.Next = ms[len(ms)-1].ID
	}
	writeJSON(w, http.StatusOK, out)
}
