package onebox

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestJoinFile(t *testing.T) {
	dir := t.TempDir()
	_, err := Read(dir)
	require.ErrorContains(t, err, "go run ./cmd/mmr")

	j := Join{Web: "https://127.0.0.1:8443", Pin: "ab", Meeting: "1234567890", Passcode: "123456"}
	require.NoError(t, Write(dir, j))
	got, err := Read(dir)
	require.NoError(t, err)
	require.Equal(t, j, got)
	fi, err := os.Stat(filepath.Join(dir, JoinFile))
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), fi.Mode().Perm(), "it holds the passcode")

	for name, body := range map[string]string{"garbage": "{", "incomplete": `{"web":"https://x"}`} {
		t.Run(name, func(t *testing.T) {
			require.NoError(t, os.WriteFile(filepath.Join(dir, JoinFile), []byte(body), 0o600))
			_, err := Read(dir)
			require.Error(t, err)
		})
	}
}

func TestDefaultState(t *testing.T) {
	t.Setenv("STATE_DIRECTORY", "/var/lib/openmmr")
	require.Equal(t, "/var/lib/openmmr", DefaultState())
}
