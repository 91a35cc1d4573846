package main

import (
	"strings"
	"testing"
)

// FuzzParse: arbitrary benchmark output never panics the parser.
func FuzzParse(f *testing.F) {
	f.Add("BenchmarkFanout/mmr/subs=50/size=200-2 1 2 ns/op 3000 ns/pkt\n")
	f.Add("BenchmarkFanout/x/subs=1/size=1 ns/pkt\nBenchmarkFanout/a/subs=9/size=9 x ns/pkt")
	f.Fuzz(func(t *testing.T, s string) {
		_, _ = parse(strings.NewReader(s))
	})
}
