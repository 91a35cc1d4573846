// Command benchplot turns the fan-out benchmark's output (go test -bench
// BenchmarkFanout, see bench/README.md) into a chart of ns/pkt (the
// forwarder's CPU time per delivered copy) against the number of
// subscribers, one line per implementation, one panel per packet size:
//
//	go test ./bench -run '^$' -bench 'BenchmarkFanout/^(mmr|floor|cfloor|naive)$/' | tee bench/fanout.txt
//	go run ./cmd/benchplot -in bench/fanout.txt -out bench/fanout.png
//
// (`make bench-plot` does both.) The format follows -out's extension:
// .png or .svg. With several runs of a sub-benchmark (-count) it plots
// their median.
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"image/color"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
	"gonum.org/v1/plot/vg/vgsvg"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stderr))
}

// point is one sub-benchmark: impl, subscribers, size → ns/pkt samples.
type key struct {
	impl       string
	subs, size int
}

var lineRE = regexp.MustCompile(`^BenchmarkFanout/([^/\s]+)/subs=(\d+)/size=(\d+)(?:-\d+)?\s`)

// parse reads go test -bench output; lines that are not BenchmarkFanout
// results with an ns/pkt metric are skipped.
func parse(r io.Reader) (map[key][]float64, error) {
	out := map[key][]float64{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		m := lineRE.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		f := strings.Fields(line)
		for i := 1; i < len(f); i++ {
			if f[i] != "ns/pkt" {
				continue
			}
			v, err := strconv.ParseFloat(f[i-1], 64)
			if err != nil {
				return nil, fmt.Errorf("%q: %w", line, err)
			}
			subs, _ := strconv.Atoi(m[2])
			size, _ := strconv.Atoi(m[3])
			k := key{m[1], subs, size}
			out[k] = append(out[k], v)
		}
	}
	return out, sc.Err()
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

var palette = []color.Color{
	color.RGBA{0x1f, 0x77, 0xb4, 0xff}, color.RGBA{0xd6, 0x27, 0x28, 0xff}, color.RGBA{0x2c, 0xa0, 0x2c, 0xff},
	color.RGBA{0x94, 0x67, 0xbd, 0xff}, color.RGBA{0xff, 0x7f, 0x0e, 0xff}, color.RGBA{0x8c, 0x56, 0x4b, 0xff},
}

// draw makes one panel per size.
func render(data map[key][]float64, impls []string, title, out string) error {
	sizes := map[int]bool{}
	for k := range data {
		if slices.Contains(impls, k.impl) {
			sizes[k.size] = true
		}
	}
	if len(sizes) == 0 {
		return errors.New("no BenchmarkFanout ns/pkt results for " + strings.Join(impls, ", "))
	}
	var sz []int
	for s := range sizes {
		sz = append(sz, s)
	}
	sort.Ints(sz)
	var plots [][]*plot.Plot
	for _, size := range sz {
		p := plot.New()
		p.Title.Text = fmt.Sprintf("%s: %d-byte packets", title, size)
		p.X.Label.Text, p.Y.Label.Text = "subscribers", "ns/pkt (CPU per delivered copy)"
		p.X.Scale, p.X.Tick.Marker = plot.LogScale{}, plot.LogTicks{Prec: -1}
		p.Legend.Top = true
		p.Add(plotter.NewGrid())
		for i, impl := range impls {
			var pts plotter.XYs
			for k, v := range data {
				if k.impl == impl && k.size == size {
					pts = append(pts, plotter.XY{X: float64(k.subs), Y: median(v)})
				}
			}
			if len(pts) == 0 {
				continue
			}
			sort.Slice(pts, func(a, b int) bool { return pts[a].X < pts[b].X })
			l, s, err := plotter.NewLinePoints(pts)
			if err != nil {
				return err
			}
			l.Color, s.Color, l.Width = palette[i%len(palette)], palette[i%len(palette)], vg.Points(1.5)
			p.Add(l, s)
			p.Legend.Add(impl, l, s)
		}
		p.Y.Min = 0
		plots = append(plots, []*plot.Plot{p})
	}
	w, h := 8*vg.Inch, vg.Length(len(plots))*3.5*vg.Inch
	var c vg.CanvasSizer
	var save func(io.Writer) error
	switch strings.ToLower(filepath.Ext(out)) {
	case ".png":
		img := vgimg.New(w, h)
		c, save = img, func(f io.Writer) error { _, err := vgimg.PngCanvas{Canvas: img}.WriteTo(f); return err }
	case ".svg":
		s := vgsvg.New(w, h)
		c, save = s, func(f io.Writer) error { _, err := s.WriteTo(f); return err }
	default:
		return fmt.Errorf("-out %s: want .png or .svg", out)
	}
	tiles := draw.Tiles{Rows: len(plots), Cols: 1, PadTop: vg.Points(6), PadBottom: vg.Points(6), PadLeft: vg.Points(6), PadRight: vg.Points(6), PadY: vg.Points(10)}
	cs := plot.Align(plots, tiles, draw.New(c))
	for i := range plots {
		plots[i][0].Draw(cs[i][0])
	}
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	if err := save(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func run(args []string, stdin io.Reader, stderr io.Writer) int {
	fs := flag.NewFlagSet("benchplot", flag.ContinueOnError)
	fs.SetOutput(stderr)
	in := fs.String("in", "-", "go test -bench output (- for stdin)")
	out := fs.String("out", "bench/fanout.png", "the chart: .png or .svg")
	impls := fs.String("impls", "mmr,floor,cfloor,naive", "implementations to draw, comma-separated")
	title := fs.String("title", "BenchmarkFanout", "chart title")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	r := stdin
	if *in != "-" {
		f, err := os.Open(*in)
		if err != nil {
			fmt.Fprintln(stderr, "benchplot:", err)
			return 1
		}
		defer f.Close()
		r = f
	}
	data, err := parse(r)
	if err == nil {
		err = render(data, strings.Split(*impls, ","), *title, *out)
	}
	if err != nil {
		fmt.Fprintln(stderr, "benchplot:", err)
		return 1
	}
	return 0
}
