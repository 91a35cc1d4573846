package docvec

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestReadAndCheck(t *testing.T) {
	const marker = "<!-- test vectors -->"
	v := [][2]string{{"a", "0102"}, {"bee", "ff"}}
	path := filepath.Join(t.TempDir(), "doc.md")
	require.NoError(t, os.WriteFile(path, []byte("# Doc\n\ntext\n\n"+Block(marker, v)+"\nmore\n```\nx 1\n```\n"), 0o644))
	require.Equal(t, map[string]string{"a": "0102", "bee": "ff"}, Read(t, path, marker))
	require.Equal(t, map[string]string{"a": "0102", "bee": "ff"}, Check(t, path, marker, v, "DOCVEC_TEST_OUT_UNSET"))

	// A block that differs fails the check.
	ft := &fakeT{}
	func() {
		defer func() { _ = recover() }()
		Check(ft, path, marker, [][2]string{{"a", "0103"}, {"bee", "ff"}}, "DOCVEC_TEST_OUT_UNSET")
	}()
	require.True(t, ft.failed, "a changed vector is caught")
}

// fakeT records failures instead of failing the test.
type fakeT struct {
	testing.TB
	failed bool
}

func (f *fakeT) Helper()               {}
func (f *fakeT) Name() string          { return "fake" }
func (f *fakeT) Errorf(string, ...any) { f.failed = true }
func (f *fakeT) FailNow()              { f.failed = true; panic("FailNow") }
func (f *fakeT) Fatalf(string, ...any) { f.FailNow() }
