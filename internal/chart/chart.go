// Package chart draws a job's convergence as a PNG with gonum/plot: the
// estimate and its 95 % band against the number of samples (log x) with a
// line at π, and |π̂ − π| against N on log-log axes beside the standard
// error, the curve it should follow.
//
// It only reads; it is safe for concurrent use.
package chart

import (
	"fmt"
	"image/color"
	"math"
	"os"
	"path/filepath"
	"strconv"

	"gonum.org/v1/gonum/stat/distuv"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"

	"github.com/picluster/picluster/collector"
)

var (
	blue = color.RGBA{R: 31, G: 119, B: 180, A: 255}
	band = color.NRGBA{R: 31, G: 119, B: 180, A: 70}
	red  = color.RGBA{R: 214, G: 39, B: 40, A: 255}
	grey = color.RGBA{R: 90, G: 90, B: 90, A: 255}
)

// WritePNG draws pts to path, replacing it atomically, with title above.
func WritePNG(path, title string, pts []collector.Point) error {
	if len(pts) < 2 {
		return fmt.Errorf("plot %s: %d points, need at least 2", path, len(pts))
	}
	z := distuv.UnitNormal.Quantile(0.975)
	est, upper, lower, errs, ses := make(plotter.XYs, 0, len(pts)), make(plotter.XYs, 0, len(pts)), make(plotter.XYs, 0, len(pts)), make(plotter.XYs, 0, len(pts)), make(plotter.XYs, 0, len(pts))
	for _, p := range pts {
		est = append(est, plotter.XY{X: p.N, Y: p.Pi})
		if math.IsNaN(p.StdErr) { // a stratified job's first batch: no scatter yet
			continue
		}
		upper = append(upper, plotter.XY{X: p.N, Y: p.Pi + z*p.StdErr})
		lower = append(lower, plotter.XY{X: p.N, Y: p.Pi - z*p.StdErr})
		if e := math.Abs(p.Pi - math.Pi); e > 0 && p.StdErr > 0 {
			errs = append(errs, plotter.XY{X: p.N, Y: e})
			ses = append(ses, plotter.XY{X: p.N, Y: p.StdErr})
		}
	}

	top := plot.New()
	top.Title.Text = title
	top.X.Label.Text = "samples N"
	top.Y.Label.Text = "estimate of π"
	top.Y.Tick.Marker = preciseTicks{}
	top.X.Scale, top.X.Tick.Marker = plot.LogScale{}, plot.LogTicks{Prec: 1}
	poly := append(append(plotter.XYs{}, upper...), reversed(lower)...)
	area, err := plotter.NewPolygon(poly)
	if err != nil {
		return err
	}
	area.Color, area.LineStyle.Width = band, 0
	line, err := plotter.NewLine(est)
	if err != nil {
		return err
	}
	line.Color, line.Width = blue, vg.Points(1.5)
	pi := plotter.NewFunction(func(float64) float64 { return math.Pi })
	pi.Color, pi.Dashes, pi.Width = red, []vg.Length{vg.Points(4), vg.Points(3)}, vg.Points(1)
	top.Add(area, line, pi, plotter.NewGrid())
	top.Legend.Add("π̂", line)
	top.Legend.Add("95 % interval", area)
	top.Legend.Add("π", pi)
	top.Legend.Top, top.Legend.Left = false, false
	// Zoom on the interval of the later half, where the story is.
	late := pts[len(pts)/2]
	if math.IsNaN(late.StdErr) {
		late = pts[len(pts)-1]
	}
	top.Y.Min, top.Y.Max = math.Min(late.Pi-4*z*late.StdErr, math.Pi-2*z*late.StdErr), math.Max(late.Pi+4*z*late.StdErr, math.Pi+2*z*late.StdErr)

	bottom := plot.New()
	bottom.Title.Text = "error against the error bar"
	bottom.X.Label.Text = "samples N"
	bottom.Y.Label.Text = "|π̂ − π|"
	bottom.X.Scale, bottom.X.Tick.Marker = plot.LogScale{}, plot.LogTicks{Prec: 1}
	bottom.Y.Scale, bottom.Y.Tick.Marker = plot.LogScale{}, plot.LogTicks{Prec: 1}
	if len(errs) > 0 {
		sc, err := plotter.NewScatter(errs)
		if err != nil {
			return err
		}
		sc.Color, sc.Radius = blue, vg.Points(1.5)
		se, err := plotter.NewLine(ses)
		if err != nil {
			return err
		}
		se.Color, se.Width = grey, vg.Points(1.5)
		// Plain MC's SE at the same N, slope −½: a stratified job's SE runs
		// parallel to it, far below.
		mc := make(plotter.XYs, 0, len(ses))
		for _, p := range ses {
			mc = append(mc, plotter.XY{X: p.X, Y: 4 * math.Sqrt(math.Pi/4*(1-math.Pi/4)/p.X)})
		}
		mcLine, err := plotter.NewLine(mc)
		if err != nil {
			return err
		}
		mcLine.Color, mcLine.Width, mcLine.Dashes = red, vg.Points(1), []vg.Length{vg.Points(4), vg.Points(3)}
		bottom.Add(sc, se, mcLine, plotter.NewGrid())
		bottom.Legend.Add("|π̂ − π|", sc)
		bottom.Legend.Add(fmt.Sprintf("standard error, slope %.2f", collector.Slope(pts)), se)
		bottom.Legend.Add("plain MC's SE, slope −0.50", mcLine)
		bottom.Legend.Top, bottom.Legend.Left = false, true
	}

	img := vgimg.New(8*vg.Inch, 8*vg.Inch)
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: 2, Cols: 1, PadTop: vg.Points(6), PadBottom: vg.Points(6), PadLeft: vg.Points(6), PadRight: vg.Points(12), PadY: vg.Points(14)}
	canvases := plot.Align([][]*plot.Plot{{top}, {bottom}}, tiles, dc)
	top.Draw(canvases[0][0])
	bottom.Draw(canvases[1][0])

	tmp, err := os.CreateTemp(filepath.Dir(path), ".plot-*.png")
	if err != nil {
		return fmt.Errorf("plot %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(tmp); err != nil {
		tmp.Close()
		return fmt.Errorf("plot %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("plot %s: %w", path, err)
	}
	return os.Rename(tmp.Name(), path)
}

// preciseTicks labels the default ticks with as many decimals as their
// spacing needs, so that ticks 1e-5 apart do not all read 3.1416.
type preciseTicks struct{}

func (preciseTicks) Ticks(lo, hi float64) []plot.Tick {
	ticks := plot.DefaultTicks{}.Ticks(lo, hi)
	step := math.Inf(1)
	prev := math.NaN()
	for _, t := range ticks {
		if t.Label != "" {
			if !math.IsNaN(prev) {
				step = math.Min(step, t.Value-prev)
			}
			prev = t.Value
		}
	}
	prec := 2
	if step > 0 && !math.IsInf(step, 0) {
		prec = max(0, int(math.Ceil(-math.Log10(step)))+1)
	}
	for i := range ticks {
		if ticks[i].Label != "" {
			ticks[i].Label = strconv.FormatFloat(ticks[i].Value, 'f', prec, 64)
		}
	}
	return ticks
}

func reversed(xys plotter.XYs) plotter.XYs {
	out := make(plotter.XYs, len(xys))
	for i, p := range xys {
		out[len(xys)-1-i] = p
	}
	return out
}
