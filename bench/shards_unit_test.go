package bench

import (
	"fmt"
	"runtime"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestScaleRig builds the two-shard rig of BenchmarkShards and checks that
// its publishers reach distinct router readers, that one round delivers
// every copy of both publishers, and that the readers' counters show both
// shards at work.
func TestScaleRig(t *testing.T) {
	before := runtime.NumGoroutine()
	s, err := newScaleRig(scenario{impl: implMMR, subs: 3, size: 1200, video: true}, 2)
	require.NoError(t, err)
	const n = 300
	delivered, _, cpu, err := s.round(n, 64)
	require.NoError(t, err)
	require.Equal(t, uint64(2*n*3), delivered)
	require.NotZero(t, cpu)
	in, err := s.parts[0].child.readers()
	require.NoError(t, err)
	require.Len(t, in, 2)
	for i, c := range in {
		require.GreaterOrEqual(t, c, uint64(n), "reader %d received its publisher's packets", i)
	}
	require.NoError(t, s.close())
	requireNoLeak(t, before)
}

func TestParseReaders(t *testing.T) {
	got, err := parseReaders("readers 1 2")
	require.NoError(t, err)
	require.Equal(t, []uint64{1, 2}, got)
	for _, bad := range []string{"readers", "readers x", "ok 1", "", "readers -1"} {
		_, err := parseReaders(bad)
		require.Error(t, err, bad)
	}
}

// FuzzParseReaders: the parser of the child's readers reply never panics
// and accepts only replies it can reproduce.
func FuzzParseReaders(f *testing.F) {
	f.Add("readers 1 2")
	f.Add("readers 18446744073709551616")
	f.Add("readers\t3 ")
	f.Fuzz(func(t *testing.T, s string) {
		got, err := parseReaders(s)
		if err != nil {
			return
		}
		parts := []string{"readers"}
		for _, v := range got {
			parts = append(parts, fmt.Sprint(v))
		}
		again, err := parseReaders(strings.Join(parts, " "))
		require.NoError(t, err)
		require.Equal(t, got, again)
	})
}
