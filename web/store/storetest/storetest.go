// Package storetest is the store test suite every store.Store
// implementation passes, and the helpers that give tests a fresh SQLite file
// or a fresh PostgreSQL schema.
package storetest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/openmmr/mmr/web/store"
)

// EnvPostgres overrides the PostgreSQL server the tests use.
const EnvPostgres = "OPENMMR_TEST_POSTGRES"

// DefaultPostgres is the test server of this project's machines and CI.
const DefaultPostgres = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

// PostgresDSN creates a fresh schema on the test PostgreSQL server, drops
// it when the test ends, and returns a DSN whose connections use it (so
// that parallel test packages never collide). It fails the test, never
// skips it, when the server is unreachable.
func PostgresDSN(t testing.TB) string {
	t.Helper()
	base := os.Getenv(EnvPostgres)
	if base == "" {
		base = DefaultPostgres
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	admin, err := sql.Open("pgx", base)
	require.NoError(t, err)
	defer admin.Close()
	require.NoError(t, admin.PingContext(ctx), "PostgreSQL at %s (set %s) is required by these tests", base, EnvPostgres)
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	schema := "t_" + hex.EncodeToString(b)
	_, err = admin.ExecContext(ctx, "CREATE SCHEMA "+schema)
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		db, err := sql.Open("pgx", base)
		if err == nil {
			_, err = db.ExecContext(ctx, "DROP SCHEMA "+schema+" CASCADE")
			db.Close()
		}
		if err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
	})
	u, err := url.Parse(base)
	require.NoError(t, err)
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

// SQLiteDSN returns a DSN of a fresh SQLite file in a temporary directory.
func SQLiteDSN(t testing.TB) string {
	return "sqlite:" + filepath.Join(t.TempDir(), "web.db")
}

// Open opens dsn and closes the store when the test ends.
func Open(t testing.TB, dsn string) store.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := store.Open(ctx, dsn)
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	return s
}

// Run is the suite: every store passes it. dsn returns a fresh, empty
// database for each subtest; the suite opens it (twice, where it checks
// that two nodes agree).
func Run(t *testing.T, dsn func(t testing.TB) string) {
	ctx := context.Background()
	now := time.Unix(1_800_000_000, 0).UTC()
	meeting := func(id string) store.Meeting {
		return store.Meeting{ID: id, Topic: "Weekly sync", Type: store.TypeMeeting, PasscodeHash: "$argon2id$x", HostKeyHash: "h",
			StartTime: now.Add(time.Hour), DurationMinutes: 60, Zones: []string{"ams", "sin"}, CreatedAt: now, UpdatedAt: now}
	}

	t.Run("meetings CRUD", func(t *testing.T) {
		s := Open(t, dsn(t))
		m := meeting("1234567890")
		require.NoError(t, s.CreateMeeting(ctx, m))
		require.ErrorIs(t, s.CreateMeeting(ctx, m), store.ErrExists)
		got, err := s.GetMeeting(ctx, m.ID)
		require.NoError(t, err)
		m.Version = 1
		require.Equal(t, m, got)

		got.Topic, got.Zones, got.StartTime, got.Ended = "Renamed", nil, time.Time{}, true
		v, err := s.UpdateMeeting(ctx, got)
		require.NoError(t, err)
		require.EqualValues(t, 2, v)
		_, err = s.UpdateMeeting(ctx, got) // stale version
		require.ErrorIs(t, err, store.ErrConflict)
		again, err := s.GetMeeting(ctx, m.ID)
		require.NoError(t, err)
		require.Equal(t, "Renamed", again.Topic)
		require.Nil(t, again.Zones)
		require.True(t, again.StartTime.IsZero())
		require.True(t, again.Ended)

		require.NoError(t, s.DeleteMeeting(ctx, m.ID))
		require.ErrorIs(t, s.DeleteMeeting(ctx, m.ID), store.ErrNotFound)
		_, err = s.GetMeeting(ctx, m.ID)
		require.ErrorIs(t, err, store.ErrNotFound)
		_, err = s.UpdateMeeting(ctx, again)
		require.ErrorIs(t, err, store.ErrNotFound)
	})

	t.Run("e2ee is stored and fixed at creation", func(t *testing.T) {
		s := Open(t, dsn(t))
		m := meeting("5550000000")
		m.E2EE = true
		require.NoError(t, s.CreateMeeting(ctx, m))
		require.NoError(t, s.CreateMeeting(ctx, meeting("5550000001")))
		got, err := s.GetMeeting(ctx, m.ID)
		require.NoError(t, err)
		require.True(t, got.E2EE)
		plain, err := s.GetMeeting(ctx, "5550000001")
		require.NoError(t, err)
		require.False(t, plain.E2EE, "the default is Standard")
		got.E2EE, got.Topic = false, "Renamed"
		_, err = s.UpdateMeeting(ctx, got)
		require.NoError(t, err)
		again, err := s.GetMeeting(ctx, m.ID)
		require.NoError(t, err)
		require.Equal(t, "Renamed", again.Topic)
		require.True(t, again.E2EE, "an update never downgrades a meeting")
		list, err := s.ListMeetings(ctx, "", 10)
		require.NoError(t, err)
		require.Len(t, list, 2)
		require.True(t, list[0].E2EE)
		require.False(t, list[1].E2EE)
	})

	t.Run("list pages in ID order", func(t *testing.T) {
		s := Open(t, dsn(t))
		for _, id := range []string{"30000000000", "1000000000", "2000000000"} {
			require.NoError(t, s.CreateMeeting(ctx, meeting(id)))
		}
		page, err := s.ListMeetings(ctx, "", 2)
		require.NoError(t, err)
		require.Equal(t, []string{"1000000000", "2000000000"}, ids(page))
		page, err = s.ListMeetings(ctx, page[1].ID, 2)
		require.NoError(t, err)
		require.Equal(t, []string{"30000000000"}, ids(page))
		page, err = s.ListMeetings(ctx, "30000000000", 2)
		require.NoError(t, err)
		require.Empty(t, page)
		require.NotNil(t, page)
	})

	t.Run("api keys", func(t *testing.T) {
		s := Open(t, dsn(t))
		k := store.APIKey{ID: "k1", Name: "ops", Hash: "abc", CreatedAt: now}
		require.NoError(t, s.CreateAPIKey(ctx, k))
		require.ErrorIs(t, s.CreateAPIKey(ctx, store.APIKey{ID: "k2", Name: "x", Hash: "abc", CreatedAt: now}), store.ErrExists)
		got, err := s.APIKeyByHash(ctx, "abc")
		require.NoError(t, err)
		require.Equal(t, k, got)
		_, err = s.APIKeyByHash(ctx, "abd")
		require.ErrorIs(t, err, store.ErrNotFound)
	})

	t.Run("lockout counts, locks, doubles and expires", func(t *testing.T) {
		s := Open(t, dsn(t))
		p := store.Policy{Limit: 3, Window: time.Minute, Lockout: 10 * time.Second, LockoutMax: 25 * time.Second}
		at := now
		fail := func() time.Time {
			u, err := s.RecordFailure(ctx, "meeting", "m", at, p)
			require.NoError(t, err)
			return u
		}
		require.True(t, fail().IsZero())
		require.True(t, fail().IsZero())
		require.Equal(t, at.Add(10*time.Second), fail(), "third failure locks")
		u, err := s.LockedUntil(ctx, "meeting", "m", at.Add(9*time.Second))
		require.NoError(t, err)
		require.Equal(t, at.Add(10*time.Second), u)
		u, err = s.LockedUntil(ctx, "meeting", "m", at.Add(10*time.Second))
		require.NoError(t, err)
		require.True(t, u.IsZero(), "lock over")
		other, err := s.LockedUntil(ctx, "source", "m", at)
		require.NoError(t, err)
		require.True(t, other.IsZero(), "scopes are separate")

		at = at.Add(11 * time.Second)
		fail()
		fail()
		require.Equal(t, at.Add(20*time.Second), fail(), "second lockout doubles")
		at = at.Add(21 * time.Second)
		fail()
		fail()
		require.Equal(t, at.Add(25*time.Second), fail(), "capped at LockoutMax")

		// A window that passes restarts the count.
		at = at.Add(26 * time.Second)
		fail()
		fail()
		at = at.Add(61 * time.Second)
		require.True(t, fail().IsZero(), "new window: count 1")
		fail()
		require.False(t, fail().IsZero())

		// Unlocked for LockoutMax: the doubling is forgotten.
		at = at.Add(10 * time.Minute)
		fail()
		fail()
		require.Equal(t, at.Add(10*time.Second), fail())

		n, err := s.Prune(ctx, at.Add(time.Hour))
		require.NoError(t, err)
		require.EqualValues(t, 1, n)
	})

	t.Run("two nodes agree on one lockout", func(t *testing.T) {
		d := dsn(t)
		a, b := Open(t, d), Open(t, d)
		p := store.Policy{Limit: 20, Window: time.Minute, Lockout: time.Minute, LockoutMax: time.Hour}
		var wg sync.WaitGroup
		// Exactly Limit failures, half from each node, all at once: one
		// lockout (the counter is atomic), not zero and not two.
		errs := make(chan error, p.Limit)
		locks := make(chan time.Time, p.Limit)
		for i := range p.Limit {
			s := a
			if i%2 == 1 {
				s = b
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				u, err := s.RecordFailure(ctx, "source", "192.0.2.1", now, p)
				errs <- err
				locks <- u
			}()
		}
		wg.Wait()
		close(errs)
		close(locks)
		for err := range errs {
			require.NoError(t, err)
		}
		n := 0
		for u := range locks {
			if !u.IsZero() {
				n++
				require.Equal(t, now.Add(time.Minute), u, "one lockout, not doubled by the race")
			}
		}
		require.Equal(t, 1, n, "exactly one failure saw the limit")
		for _, s := range []store.Store{a, b} {
			u, err := s.LockedUntil(ctx, "source", "192.0.2.1", now)
			require.NoError(t, err)
			require.Equal(t, now.Add(time.Minute), u)
		}
	})

	t.Run("migrations are idempotent", func(t *testing.T) {
		d := dsn(t)
		s := Open(t, d)
		require.NoError(t, s.CreateMeeting(ctx, meeting("1234567890")))
		require.NoError(t, s.Close())
		require.NoError(t, s.Close(), "Close is idempotent")
		s2 := Open(t, d)
		_, err := s2.GetMeeting(ctx, "1234567890")
		require.NoError(t, err, "reopening keeps the data")
	})

	t.Run("upgrade from migration 001 keeps meetings, as Standard", func(t *testing.T) {
		d := dsn(t)
		db := openRaw(t, d)
		ms, err := store.Migrations()
		require.NoError(t, err)
		_, err = db.ExecContext(ctx, `CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)`)
		require.NoError(t, err)
		_, err = db.ExecContext(ctx, ms[0].SQL)
		require.NoError(t, err)
		_, err = db.ExecContext(ctx, `INSERT INTO schema_migrations (version, name, applied_at) VALUES (1, $1, 0)`, ms[0].Name)
		require.NoError(t, err)
		_, err = db.ExecContext(ctx, `INSERT INTO meetings (id, topic, type, created_at, updated_at) VALUES ('1234567890', 'Old', 'meeting', 0, 0)`)
		require.NoError(t, err)
		require.NoError(t, db.Close())
		s := Open(t, d)
		got, err := s.GetMeeting(ctx, "1234567890")
		require.NoError(t, err)
		require.Equal(t, "Old", got.Topic)
		require.False(t, got.E2EE)
	})
}

// openRaw opens the database behind a store DSN without the store (no
// migrations run), closed when the test ends.
func openRaw(t testing.TB, dsn string) *sql.DB {
	t.Helper()
	driver, name := "pgx", dsn
	if path, ok := strings.CutPrefix(dsn, "sqlite:"); ok {
		driver, name = "sqlite", "file:"+path
	}
	db, err := sql.Open(driver, name)
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	return db
}

func ids(ms []store.Meeting) []string {
	out := []string{}
	for _, m := range ms {
		out = append(out, m.ID)
	}
	return out
}
