// Package store keeps the web tier's state: meetings, API keys, and the
// brute-force lockout counters every web node must agree on. One Store
// interface, two implementations behind the same versioned SQL migrations
// (migrations/*.sql, embedded, run at Open): SQLite (modernc.org/sqlite,
// pure Go) for one node, PostgreSQL (github.com/jackc/pgx/v5) for several
// nodes behind a load balancer.
//
// Every method is safe for concurrent use, also by several processes on one
// database: each write is one statement or one transaction, so nothing is
// ever half-written, and counters are updated atomically in SQL.
package store

import (
	"context"
	"errors"
	"time"
)

// Errors returned (wrapped) by the store.
var (
	ErrNotFound = errors.New("store: not found")
	ErrExists   = errors.New("store: already exists")
	// ErrConflict means the row changed since it was read (optimistic
	// concurrency on Meeting.Version): read it again and retry.
	ErrConflict = errors.New("store: concurrent update")
)

// Meeting types.
const (
	TypeMeeting = "meeting"
	TypeWebinar = "webinar"
)

// Meeting is one meeting as stored. Secrets are stored as password hashes
// (web.HashSecret), never in clear.
type Meeting struct {
	ID              string // 10 or 11 digits
	Topic           string
	Type            string    // TypeMeeting or TypeWebinar
	PasscodeHash    string    // "" = no passcode
	HostKeyHash     string    // "" = no host key
	PanelistKeyHash string    // webinars: presenting it makes a panelist
	StartTime       time.Time // zero = instant meeting (UTC, second resolution)
	DurationMinutes int
	Zones           []string // zone affinity: ranked before the others
	// E2EE: the meeting is end-to-end encrypted (its join tokens carry the
	// E2EE flag, docs/PROTOCOL.md "Join tokens", version 3). Fixed at
	// creation: UpdateMeeting leaves it unchanged.
	E2EE      bool
	Ended     bool
	CreatedAt time.Time
	UpdatedAt time.Time
	Version   int64 // incremented by every update
}

// APIKey is an admin API key: only its SHA-256 is stored.
type APIKey struct {
	ID        string
	Name      string
	Hash      string // hex SHA-256 of the key
	CreatedAt time.Time
}

// Policy is a lockout rule: Limit failures within Window lock the key for
// Lockout, doubling with every further lockout up to LockoutMax; the
// doubling is forgotten once a key has stayed unlocked for LockoutMax.
type Policy struct {
	Limit      int
	Window     time.Duration
	Lockout    time.Duration
	LockoutMax time.Duration
}

// Meetings stores meetings.
type Meetings interface {
	// CreateMeeting inserts m (ErrExists when the ID is taken).
	CreateMeeting(ctx context.Context, m Meeting) error
	// GetMeeting returns the meeting (ErrNotFound).
	GetMeeting(ctx context.Context, id string) (Meeting, error)
	// UpdateMeeting writes m if the stored version is still m.Version
	// (ErrConflict otherwise, ErrNotFound when gone) and returns the new
	// version.
	UpdateMeeting(ctx context.Context, m Meeting) (int64, error)
	// DeleteMeeting removes the meeting (ErrNotFound).
	DeleteMeeting(ctx context.Context, id string) error
	// ListMeetings returns up to limit meetings with IDs greater than
	// after, in ID order.
	ListMeetings(ctx context.Context, after string, limit int) ([]Meeting, error)
}

// Keys stores admin API keys.
type Keys interface {
	CreateAPIKey(ctx context.Context, k APIKey) error
	// APIKeyByHash returns the key with that hash (ErrNotFound).
	APIKeyByHash(ctx context.Context, hash string) (APIKey, error)
}

// Lockouts are the brute-force counters.
type Lockouts interface {
	// RecordFailure counts one failure of key in scope at now under p and
	// returns the time the key is locked until (zero when not locked).
	RecordFailure(ctx context.Context, scope, key string, now time.Time, p Policy) (time.Time, error)
	// LockedUntil returns the end of key's current lockout, zero when none.
	LockedUntil(ctx context.Context, scope, key string, now time.Time) (time.Time, error)
	// Prune deletes counters idle since before (housekeeping).
	Prune(ctx context.Context, before time.Time) (int64, error)
}

// Store is the whole store.
type Store interface {
	Meetings
	Keys
	Lockouts
	// Close releases the database. Idempotent.
	Close() error
}
