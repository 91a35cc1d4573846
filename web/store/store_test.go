package store_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/openmmr/mmr/internal/leaktest"
	"github.com/openmmr/mmr/web/store"
	"github.com/openmmr/mmr/web/store/storetest"
)

func TestSQLite(t *testing.T) {
	leaktest.Check(t)
	storetest.Run(t, storetest.SQLiteDSN)
}

func TestPostgres(t *testing.T) {
	leaktest.Check(t)
	storetest.Run(t, storetest.PostgresDSN)
}

func TestOpenRefuses(t *testing.T) {
	leaktest.Check(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, dsn := range []string{"mysql://x", "sqlite:", "postgres://nobody:secret@127.0.0.1:1/none?connect_timeout=2"} {
		_, err := store.Open(ctx, dsn)
		require.Error(t, err, dsn)
		require.False(t, strings.Contains(err.Error(), "secret"), "password redacted: %v", err)
	}
}

func TestMigrationsOrdered(t *testing.T) {
	leaktest.Check(t)
	ms, err := store.Migrations()
	require.NoError(t, err)
	require.NotEmpty(t, ms)
	for i, m := range ms {
		require.Equal(t, i+1, m.Version, "versions are 1, 2, 3, ... without gaps")
	}
}
