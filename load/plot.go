package load

import (
	"fmt"
	"image/color"
	"os"
	"path/filepath"
	"strings"

	"github.com/openmmr/mmr/media"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
	"gonum.org/v1/plot/vg/vgsvg"
)

// kindColors: one colour per media kind, the same in every panel.
var kindColors = map[string]color.Color{
	"audio":   color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff},
	"video":   color.RGBA{R: 0xd6, G: 0x27, B: 0x28, A: 0xff},
	"content": color.RGBA{R: 0x2c, G: 0xa0, B: 0x2c, A: 0xff},
}

// WritePlot draws the report as three panels, stacked: one-way delay over
// the window (p50 solid, p99 dashed, per kind), loss over the window, and
// the CDF of the delay. The format follows the extension: .png or .svg.
func (rep *Report) WritePlot(path string) error {
	delay := plot.New()
	delay.Title.Text = fmt.Sprintf("one-way delay (%s, %d meetings × %d)", rep.Shape, rep.Meetings, rep.Participants)
	delay.X.Label.Text, delay.Y.Label.Text = "window time (s)", "delay (ms)"
	loss := plot.New()
	loss.Title.Text = "loss"
	loss.X.Label.Text, loss.Y.Label.Text = "window time (s)", "loss (%)"
	cdf := plot.New()
	cdf.Title.Text = "delay CDF"
	cdf.X.Label.Text, cdf.Y.Label.Text = "delay (ms)", "fraction of packets"
	for _, k := range rep.Kinds {
		c := kindColors[k.Kind]
		p50, p99, lo := plotter.XYs{}, plotter.XYs{}, plotter.XYs{}
		for _, pt := range rep.Series {
			kv := pt.Kinds[k.Kind]
			if kv.Received > 0 {
				p50 = append(p50, plotter.XY{X: pt.T, Y: kv.P50})
				p99 = append(p99, plotter.XY{X: pt.T, Y: kv.P99})
			}
			if kv.Expected > 0 {
				lo = append(lo, plotter.XY{X: pt.T, Y: 100 * kv.Loss})
			}
		}
		if err := addLine(delay, p50, c, nil, k.Kind+" p50"); err != nil {
			return err
		}
		if err := addLine(delay, p99, c, []vg.Length{vg.Points(4), vg.Points(2)}, k.Kind+" p99"); err != nil {
			return err
		}
		if err := addLine(loss, lo, c, nil, k.Kind); err != nil {
			return err
		}
		mk, err := media.ParseKind(k.Kind)
		if err != nil {
			return err
		}
		xs, ys := rep.delay[mk.Index()].CDF()
		pts := plotter.XYs{}
		for i := range xs {
			if v := float64(xs[i]) / 1e6; v > 0 {
				pts = append(pts, plotter.XY{X: v, Y: ys[i]})
			}
		}
		if err := addLine(cdf, pts, c, nil, k.Kind); err != nil {
			return err
		}
	}
	var anyDelay bool
	for _, k := range rep.Kinds {
		anyDelay = anyDelay || k.Delay.N > 0
	}
	if anyDelay { // a log axis needs positive data
		cdf.X.Scale = plot.LogScale{}
		cdf.X.Tick.Marker = plot.LogTicks{Prec: -1}
	}
	for _, p := range []*plot.Plot{delay, loss, cdf} {
		p.Legend.Top = true
		p.Add(plotter.NewGrid())
	}
	const w, h = 8 * vg.Inch, 11 * vg.Inch
	var c vg.CanvasSizer
	var save func(f *os.File) error
	switch strings.ToLower(filepath.Ext(path)) {
	case ".png":
		img := vgimg.New(w, h)
		c = img
		save = func(f *os.File) error { _, err := vgimg.PngCanvas{Canvas: img}.WriteTo(f); return err }
	case ".svg":
		s := vgsvg.New(w, h)
		c = s
		save = func(f *os.File) error { _, err := s.WriteTo(f); return err }
	default:
		return fmt.Errorf("load: plot %s: want a .png or .svg file", path)
	}
	dc := draw.New(c)
	tiles := draw.Tiles{Rows: 3, Cols: 1, PadTop: vg.Points(8), PadBottom: vg.Points(8), PadLeft: vg.Points(8), PadRight: vg.Points(8), PadY: vg.Points(12)}
	canvases := plot.Align([][]*plot.Plot{{delay}, {loss}, {cdf}}, tiles, dc)
	delay.Draw(canvases[0][0])
	loss.Draw(canvases[1][0])
	cdf.Draw(canvases[2][0])
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := save(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func addLine(p *plot.Plot, pts plotter.XYs, c color.Color, dashes []vg.Length, name string) error {
	if len(pts) == 0 {
		return nil
	}
	l, err := plotter.NewLine(pts)
	if err != nil {
		return err
	}
	l.Color, l.Dashes, l.Width = c, dashes, vg.Points(1.5)
	p.Add(l)
	p.Legend.Add(name, l)
	return nil
}
