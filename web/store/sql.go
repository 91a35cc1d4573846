package store

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"
	_ "modernc.org/sqlite"             // database/sql driver "sqlite"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Pool sizes. SQLite in WAL mode has one writer at a time and any number
// of readers; PostgreSQL's default max_connections is 100, shared by every
// web node.
const (
	sqliteConns = 8
	pgConns     = 16
	// busyTimeout is how long an SQLite writer waits for the write lock.
	busyTimeout = 5 * time.Second
)

type sqlStore struct {
	db       *sql.DB
	postgres bool
	once     sync.Once
}

// Open opens the store named by dsn: "sqlite:PATH" (the file and its
// directory are created) or "postgres://..." / "postgresql://..." (a libpq
// URL; pgx parameters such as search_path are passed on), and runs the
// migrations not yet applied.
func Open(ctx context.Context, dsn string) (Store, error) {
	s := &sqlStore{}
	var err error
	switch {
	case strings.HasPrefix(dsn, "sqlite:"):
		path := strings.TrimPrefix(dsn, "sqlite:")
		if path == "" {
			return nil, errors.New("store: sqlite: needs a path (sqlite:PATH)")
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, fmt.Errorf("store: %w", err)
		}
		q := url.Values{}
		q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", busyTimeout.Milliseconds()))
		q.Add("_pragma", "journal_mode(WAL)")
		q.Add("_pragma", "synchronous(NORMAL)") // WAL: durable at checkpoints, never corrupt
		q.Add("_txlock", "immediate")           // writers take the lock at BEGIN: no upgrade deadlocks
		s.db, err = sql.Open("sqlite", "file:"+path+"?"+q.Encode())
		if err == nil {
			s.db.SetMaxOpenConns(sqliteConns)
			s.db.SetMaxIdleConns(sqliteConns)
		}
	case strings.HasPrefix(dsn, "postgres://"), strings.HasPrefix(dsn, "postgresql://"):
		s.postgres = true
		s.db, err = sql.Open("pgx", dsn)
		if err == nil {
			s.db.SetMaxOpenConns(pgConns)
			s.db.SetMaxIdleConns(pgConns)
		}
	default:
		return nil, fmt.Errorf("store: %q: want sqlite:PATH or postgres://URL", redact(dsn))
	}
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	if err := s.db.PingContext(ctx); err != nil {
		s.db.Close()
		return nil, fmt.Errorf("store: cannot reach %s: %w", redact(dsn), err)
	}
	if err := s.migrate(ctx); err != nil {
		s.db.Close()
		return nil, err
	}
	return s, nil
}

// redact hides a password in a URL for error messages.
func redact(dsn string) string {
	if u, err := url.Parse(dsn); err == nil && u.User != nil {
		return u.Redacted()
	}
	return dsn
}

// Migration is one embedded migration.
type Migration struct {
	Version int
	Name    string
	SQL     string
}

// Migrations returns the embedded migrations in version order (files
// NNN_name.sql).
func Migrations() ([]Migration, error) {
	ents, err := fs.ReadDir(migrations, "migrations")
	if err != nil {
		return nil, err
	}
	var out []Migration
	for _, e := range ents {
		num, _, ok := strings.Cut(e.Name(), "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil {
			return nil, fmt.Errorf("store: migration %s: name must be NNN_name.sql", e.Name())
		}
		b, err := migrations.ReadFile("migrations/" + e.Name())
		if err != nil {
			return nil, err
		}
		out = append(out, Migration{Version: v, Name: e.Name(), SQL: string(b)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Version < out[j].Version })
	return out, nil
}

// migrationLock is the PostgreSQL advisory lock key that serialises
// migrations of web nodes starting at once ("ommr" in ASCII).
const migrationLock = 0x6f6d6d72

func (s *sqlStore) migrate(ctx context.Context) error {
	ms, err := Migrations()
	if err != nil {
		return err
	}
	if _, err := s.db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)`); err != nil {
		return fmt.Errorf("store: migrations table: %w", err)
	}
	for _, m := range ms {
		if err := s.apply(ctx, m); err != nil {
			return fmt.Errorf("store: migration %s: %w", m.Name, err)
		}
	}
	return nil
}

// apply runs m in a transaction unless already applied.
func (s *sqlStore) apply(ctx context.Context, m Migration) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if s.postgres {
		if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1)`, migrationLock); err != nil {
			return err
		}
	}
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM schema_migrations WHERE version = $1`, m.Version).Scan(&n); err != nil {
		return err
	}
	if n > 0 {
		return nil
	}
	if _, err := tx.ExecContext(ctx, m.SQL); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)`, m.Version, m.Name, time.Now().UnixMilli()); err != nil {
		return err
	}
	return tx.Commit()
}

func (s *sqlStore) Close() error {
	var err error
	s.once.Do(func() { err = s.db.Close() })
	return err
}

// isUnique reports a unique-constraint violation in either database.
func isUnique(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code == "23505"
	}
	return err != nil && strings.Contains(err.Error(), "UNIQUE constraint failed")
}

const meetingCols = `id, topic, type, passcode_hash, host_key_hash, panelist_key_hash, start_time, duration_minutes, zones, ended, created_at, updated_at, version, e2ee`

func (s *sqlStore) CreateMeeting(ctx context.Context, m Meeting) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO meetings (`+meetingCols+`) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,1,$13)`,
		m.ID, m.Topic, m.Type, m.PasscodeHash, m.HostKeyHash, m.PanelistKeyHash, unixOrZero(m.StartTime), m.DurationMinutes,
		strings.Join(m.Zones, ","), boolInt(m.Ended), m.CreatedAt.UnixMilli(), m.UpdatedAt.UnixMilli(), boolInt(m.E2EE))
	if isUnique(err) {
		return fmt.Errorf("meeting %s: %w", m.ID, ErrExists)
	}
	return err
}

type scanner interface{ Scan(...any) error }

func scanMeeting(r scanner) (Meeting, error) {
	var m Meeting
	var start, created, updated int64
	var zones string
	var ended, e2ee int
	if err := r.Scan(&m.ID, &m.Topic, &m.Type, &m.PasscodeHash, &m.HostKeyHash, &m.PanelistKeyHash, &start, &m.DurationMinutes, &zones, &ended, &created, &updated, &m.Version, &e2ee); err != nil {
		return Meeting{}, err
	}
	if start != 0 {
		m.StartTime = time.Unix(start, 0).UTC()
	}
	if zones != "" {
		m.Zones = strings.Split(zones, ",")
	}
	m.Ended, m.E2EE = ended != 0, e2ee != 0
	m.CreatedAt, m.UpdatedAt = time.UnixMilli(created).UTC(), time.UnixMilli(updated).UTC()
	return m, nil
}

func (s *sqlStore) GetMeeting(ctx context.Context, id string) (Meeting, error) {
	m, err := scanMeeting(s.db.QueryRowContext(ctx, `SELECT `+meetingCols+` FROM meetings WHERE id = $1`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return Meeting{}, fmt.Errorf("meeting %s: %w", id, ErrNotFound)
	}
	return m, err
}

func (s *sqlStore) UpdateMeeting(ctx context.Context, m Meeting) (int64, error) {
	res, err := s.db.ExecContext(ctx, `UPDATE meetings SET topic=$2, type=$3, passcode_hash=$4, host_key_hash=$5, panelist_key_hash=$6,
		start_time=$7, duration_minutes=$8, zones=$9, ended=$10, updated_at=$11, version=version+1 WHERE id=$1 AND version=$12`,
		m.ID, m.Topic, m.Type, m.PasscodeHash, m.HostKeyHash, m.PanelistKeyHash, unixOrZero(m.StartTime), m.DurationMinutes,
		strings.Join(m.Zones, ","), boolInt(m.Ended), m.UpdatedAt.UnixMilli(), m.Version)
	if err != nil {
		return 0, err
	}
	if n, err := res.RowsAffected(); err != nil || n == 1 {
		return m.Version + 1, err
	}
	if _, err := s.GetMeeting(ctx, m.ID); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("meeting %s: %w", m.ID, ErrConflict)
}

func (s *sqlStore) DeleteMeeting(ctx context.Context, id string) error {
	res, err := s.db.ExecContext(ctx, `DELETE FROM meetings WHERE id = $1`, id)
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		if err == nil {
			err = fmt.Errorf("meeting %s: %w", id, ErrNotFound)
		}
		return err
	}
	return nil
}

func (s *sqlStore) ListMeetings(ctx context.Context, after string, limit int) ([]Meeting, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+meetingCols+` FROM meetings WHERE id > $1 ORDER BY id LIMIT $2`, after, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []Meeting{}
	for rows.Next() {
		m, err := scanMeeting(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, rows.Err()
}

func (s *sqlStore) CreateAPIKey(ctx context.Context, k APIKey) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO api_keys (id, name, hash, created_at) VALUES ($1,$2,$3,$4)`, k.ID, k.Name, k.Hash, k.CreatedAt.UnixMilli())
	if isUnique(err) {
		return fmt.Errorf("api key %s: %w", k.ID, ErrExists)
	}
	return err
}

func (s *sqlStore) APIKeyByHash(ctx context.Context, hash string) (APIKey, error) {
	var k APIKey
	var created int64
	err := s.db.QueryRowContext(ctx, `SELECT id, name, hash, created_at FROM api_keys WHERE hash = $1`, hash).Scan(&k.ID, &k.Name, &k.Hash, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return APIKey{}, ErrNotFound
	}
	k.CreatedAt = time.UnixMilli(created).UTC()
	return k, err
}

// RecordFailure: one upsert counts the failure atomically (a new window
// restarts the count; the lockout doubling is forgotten after LockoutMax
// unlocked), then, if the count reached the limit, one conditional update
// locks the key. Two nodes failing at once both count; only one of them
// finds the count at the limit and locks (the other's update matches no
// row, as the first reset the count), so a lockout is never doubled twice.
func (s *sqlStore) RecordFailure(ctx context.Context, scope, key string, now time.Time, p Policy) (time.Time, error) {
	ms := now.UnixMilli()
	var failures, strikes int
	var locked int64
	err := s.db.QueryRowContext(ctx, `INSERT INTO lockouts (scope, key, window_start, failures, locked_until, strikes) VALUES ($1, $2, $3, 1, 0, 0)
		ON CONFLICT (scope, key) DO UPDATE SET
			failures = CASE WHEN lockouts.window_start <= $4 THEN 1 ELSE lockouts.failures + 1 END,
			window_start = CASE WHEN lockouts.window_start <= $4 THEN $3 ELSE lockouts.window_start END,
			strikes = CASE WHEN lockouts.locked_until <= $5 THEN 0 ELSE lockouts.strikes END
		RETURNING failures, strikes, locked_until`,
		scope, key, ms, ms-p.Window.Milliseconds(), ms-p.LockoutMax.Milliseconds()).Scan(&failures, &strikes, &locked)
	if err != nil {
		return time.Time{}, err
	}
	if failures < p.Limit {
		return lockedTime(locked, ms), nil
	}
	lock := p.Lockout
	for i := 0; i < strikes && lock < p.LockoutMax; i++ {
		lock *= 2
	}
	lock = min(lock, p.LockoutMax)
	until := ms + lock.Milliseconds()
	err = s.db.QueryRowContext(ctx, `UPDATE lockouts SET locked_until = $3, strikes = strikes + 1, failures = 0, window_start = $4
		WHERE scope = $1 AND key = $2 AND failures >= $5 RETURNING locked_until`, scope, key, until, ms, p.Limit).Scan(&locked)
	if errors.Is(err, sql.ErrNoRows) { // another node locked it first
		return s.LockedUntil(ctx, scope, key, now)
	}
	if err != nil {
		return time.Time{}, err
	}
	return lockedTime(locked, ms), nil
}

func (s *sqlStore) LockedUntil(ctx context.Context, scope, key string, now time.Time) (time.Time, error) {
	var locked int64
	err := s.db.QueryRowContext(ctx, `SELECT locked_until FROM lockouts WHERE scope = $1 AND key = $2`, scope, key).Scan(&locked)
	if errors.Is(err, sql.ErrNoRows) {
		return time.Time{}, nil
	}
	if err != nil {
		return time.Time{}, err
	}
	return lockedTime(locked, now.UnixMilli()), nil
}

func (s *sqlStore) Prune(ctx context.Context, before time.Time) (int64, error) {
	b := before.UnixMilli()
	res, err := s.db.ExecContext(ctx, `DELETE FROM lockouts WHERE locked_until < $1 AND window_start < $1`, b)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

func lockedTime(until, now int64) time.Time {
	if until <= now {
		return time.Time{}
	}
	return time.UnixMilli(until).UTC()
}

func unixOrZero(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.Unix()
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
