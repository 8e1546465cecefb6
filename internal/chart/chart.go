// Package chart draws a group's chart — inbound, each work signal against the band emergentd
// expected, the live instances, the episodes shaded — as SVG for the status page and as PNG
// for Slack, with gonum/plot: one drawing, two formats, so the page and the alert show the
// same picture.
package chart

import (
	"bytes"
	"fmt"
	"image/color"
	"math"
	"time"

	"github.com/emergent-sh/emergent/engine"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
	"gonum.org/v1/plot/vg/vgsvg"
)

// Legend entries, also what tests and screen readers look for in the drawing.
const (
	LegendObserved = "observed"
	LegendExpected = "expected"
	LegendPages    = "pages above"
	LegendEpisode  = "episode"
)

// Colours are not premultiplied (NRGBA): the shades are translucent over the lines.
var (
	observedColor = color.NRGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff}
	expectedColor = color.NRGBA{R: 0x2c, G: 0xa0, B: 0x2c, A: 0xff}
	bandColor     = color.NRGBA{R: 0x2c, G: 0xa0, B: 0x2c, A: 0x50}
	episodeColor  = color.NRGBA{R: 0xd6, G: 0x27, B: 0x28, A: 0x30}
)

// Span is how much of the past a chart shows: enough to see an episode's onset and what it
// followed, at a few hundred points.
const Span = 3 * time.Hour

// panelHeight is one panel's height: a chart of three panels fits a laptop screen and a Slack
// image preview.
const panelHeight = 2.2 * vg.Inch

// Render draws c as "svg" or "png", width wide, one panel per row: inbound, each work signal,
// and the instances when known.
func Render(c *engine.Chart, format string, width vg.Length) ([]byte, error) {
	var panels []*plot.Plot
	in, err := panel(c, "inbound requests/s", c.Inbound, nil, nil)
	if err != nil {
		return nil, err
	}
	panels = append(panels, in)
	for _, s := range c.Signals {
		title := s.Name
		if s.Unit != "" {
			title += " (" + s.Unit + "/s)"
		}
		p, err := panel(c, title, s.Work, s.Expected, s.PageAbove)
		if err != nil {
			return nil, err
		}
		panels = append(panels, p)
	}
	if len(c.Instances) > 0 {
		p, err := panel(c, "live instances", c.Instances, nil, nil)
		if err != nil {
			return nil, err
		}
		panels = append(panels, p)
	}

	height := panelHeight * vg.Length(len(panels))
	var canvas vg.CanvasWriterTo
	switch format {
	case "svg":
		canvas = vgsvg.New(width, height)
	case "png":
		canvas = vgimg.PngCanvas{Canvas: vgimg.NewWith(vgimg.UseWH(width, height), vgimg.UseDPI(96))}
	default:
		return nil, fmt.Errorf("chart: unknown format %q", format)
	}
	rows := make([][]*plot.Plot, len(panels))
	for i, p := range panels {
		rows[i] = []*plot.Plot{p}
	}
	tiles := draw.Tiles{Rows: len(panels), Cols: 1, PadY: vg.Points(6), PadTop: vg.Points(4), PadBottom: vg.Points(4),
		PadLeft: vg.Points(4), PadRight: vg.Points(8)}
	canvases := plot.Align(rows, tiles, draw.New(canvas))
	for i, p := range panels {
		p.Draw(canvases[i][0])
	}
	var buf bytes.Buffer
	if _, err := canvas.WriteTo(&buf); err != nil {
		return nil, fmt.Errorf("chart: %w", err)
	}
	return buf.Bytes(), nil
}

// panel is one row: the values as a line, the band (expected to pages-above) shaded with the
// expected line, and the episodes shaded across the panel's height.
func panel(c *engine.Chart, title string, values, expected, pageAbove []engine.Point) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = title
	p.X.Tick.Marker = plot.TimeTicks{Format: "15:04", Time: func(t float64) time.Time { return time.Unix(int64(t), 0).UTC() }}
	p.X.Min, p.X.Max = unix(c.From), unix(c.To)
	p.Y.Min = 0
	p.Legend.Top, p.Legend.Left = true, true
	maxY := 0.0
	for _, ps := range [][]engine.Point{values, pageAbove} {
		for _, pt := range ps {
			if finite(pt.V) {
				maxY = math.Max(maxY, pt.V)
			}
		}
	}
	p.Y.Max = math.Max(maxY*1.1, 1e-3)

	for _, ep := range c.Episodes {
		end := c.To
		if !ep.End.IsZero() {
			end = ep.End
		}
		x0, x1 := math.Max(unix(ep.Start), p.X.Min), math.Min(unix(end), p.X.Max)
		if x1 <= x0 {
			continue
		}
		shade, err := plotter.NewPolygon(plotter.XYs{{X: x0, Y: 0}, {X: x1, Y: 0}, {X: x1, Y: p.Y.Max}, {X: x0, Y: p.Y.Max}})
		if err != nil {
			return nil, err
		}
		shade.Color, shade.LineStyle.Width = episodeColor, 0
		p.Add(shade)
		p.Legend.Add(LegendEpisode, shade)
	}
	if band := bandPolygon(expected, pageAbove); band != nil {
		shade, err := plotter.NewPolygon(band)
		if err != nil {
			return nil, err
		}
		shade.Color, shade.LineStyle.Width = bandColor, 0
		p.Add(shade)
		p.Legend.Add(LegendPages, shade)
		if exp := xys(expected); len(exp) > 1 {
			line, err := plotter.NewLine(exp)
			if err != nil {
				return nil, err
			}
			line.Color, line.Dashes = expectedColor, []vg.Length{vg.Points(4), vg.Points(2)}
			p.Add(line)
			p.Legend.Add(LegendExpected, line)
		}
	}
	if obs := xys(values); len(obs) > 0 {
		line, err := plotter.NewLine(obs)
		if err != nil {
			return nil, err
		}
		line.Color, line.Width = observedColor, vg.Points(1.5)
		p.Add(line)
		p.Legend.Add(LegendObserved, line)
	}
	return p, nil
}

// bandPolygon is the area from expected up to pageAbove, over the points where both are known
// (nil with fewer than two).
func bandPolygon(expected, pageAbove []engine.Point) plotter.XYs {
	var lo, hi plotter.XYs
	for i := range min(len(expected), len(pageAbove)) {
		e, a := expected[i], pageAbove[i]
		if finite(e.V) && finite(a.V) {
			lo = append(lo, plotter.XY{X: unix(e.T), Y: e.V})
			hi = append(hi, plotter.XY{X: unix(a.T), Y: a.V})
		}
	}
	if len(lo) < 2 {
		return nil
	}
	for i := len(hi) - 1; i >= 0; i-- {
		lo = append(lo, hi[i])
	}
	return lo
}

func xys(ps []engine.Point) plotter.XYs {
	out := make(plotter.XYs, 0, len(ps))
	for _, p := range ps {
		if finite(p.V) {
			out = append(out, plotter.XY{X: unix(p.T), Y: p.V})
		}
	}
	return out
}

func unix(t time.Time) float64 { return float64(t.Unix()) }

func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }
