package main

import (
	"bytes"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/openmmr/mmr/internal/leaktest"
)

func TestParse(t *testing.T) {
	leaktest.Check(t)
	in := "goos: linux\nBenchmarkFanout/mmr/subs=50/size=200-2   \t 4699\t 297321 ns/op\t 0 allocs/pkt\t 3012 ns/pkt\t 0 B/op\n" +
		"BenchmarkFanout/mmr/subs=50/size=200-2 1 2 ns/op 3000 ns/pkt\nBenchmarkFanout/mmr/subs=50/size=200-2 1 2 ns/op 2000 ns/pkt\n" +
		"BenchmarkRatio/x 1 2 ns/op 5 ns/pkt\nBenchmarkFanout/naive/subs=1/size=1200 1 2 ns/op 12.5 ns/pkt\ngarbage ns/pkt\n"
	d, err := parse(strings.NewReader(in))
	require.NoError(t, err)
	require.Len(t, d, 2)
	require.Equal(t, 3000.0, median(d[key{"mmr", 50, 200}]))
	require.Equal(t, []float64{12.5}, d[key{"naive", 1, 1200}])
}

// TestPlots draws the committed benchmark output (testdata/fanout.txt, the
// run behind bench/fanout.png) as PNG and SVG.
func TestPlots(t *testing.T) {
	leaktest.Check(t)
	dir := t.TempDir()
	for _, ext := range []string{".png", ".svg"} {
		out := filepath.Join(dir, "f"+ext)
		var errb bytes.Buffer
		require.Equal(t, 0, run([]string{"-in", "testdata/fanout.txt", "-out", out}, nil, &errb), errb.String())
		b, err := os.ReadFile(out)
		require.NoError(t, err)
		if ext == ".png" {
			img, err := png.Decode(bytes.NewReader(b))
			require.NoError(t, err)
			require.Greater(t, img.Bounds().Dy(), 500)
		} else {
			require.Contains(t, string(b), "<svg")
			require.Contains(t, string(b), "cfloor")
		}
	}
	var errb bytes.Buffer
	require.Equal(t, 1, run([]string{"-in", "testdata/fanout.txt", "-impls", "nothing", "-out", filepath.Join(dir, "x.png")}, nil, &errb))
	require.Contains(t, errb.String(), "no BenchmarkFanout")
	require.Equal(t, 1, run([]string{"-in", "testdata/fanout.txt", "-out", filepath.Join(dir, "x.gif")}, nil, &errb))
}
