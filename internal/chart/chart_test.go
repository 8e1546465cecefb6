package chart

import (
	"bytes"
	"math"
	"testing"
	"time"

	"github.com/emergent-sh/emergent/detector"
	"github.com/emergent-sh/emergent/engine"
	"gonum.org/v1/plot/vg"
)

// TestRender draws one chart in both formats: a PNG for Slack, an SVG for the page whose legend
// names what it shows, with NaN points (unknown band, gaps) left out rather than drawn at zero.
func TestRender(t *testing.T) {
	to := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	c := &engine.Chart{Rule: "token-minting", From: to.Add(-Span), To: to,
		Episodes: []detector.Episode{{Start: to.Add(-time.Hour)}}}
	sig := engine.ChartSignal{Name: "token_mints", Unit: "token mints"}
	for i := range 10 {
		at := c.From.Add(time.Duration(i) * Span / 10)
		c.Inbound = append(c.Inbound, engine.Point{T: at, V: 4})
		sig.Work = append(sig.Work, engine.Point{T: at, V: float64(i)})
		band := 0.5
		if i == 3 {
			band = math.NaN()
		}
		sig.Expected = append(sig.Expected, engine.Point{T: at, V: band})
		sig.PageAbove = append(sig.PageAbove, engine.Point{T: at, V: 2 * band})
	}
	c.Signals = []engine.ChartSignal{sig}

	png, err := Render(c, "png", 6*vg.Inch)
	if err != nil || !bytes.HasPrefix(png, []byte("\x89PNG\r\n\x1a\n")) {
		t.Fatalf("png: %v, starts %q", err, png[:min(8, len(png))])
	}
	svg, err := Render(c, "svg", 6*vg.Inch)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"<svg", LegendObserved, LegendExpected, LegendPages, LegendEpisode, "token_mints (token mints/s)"} {
		if !bytes.Contains(svg, []byte(want)) {
			t.Errorf("svg lacks %q", want)
		}
	}
	if _, err := Render(c, "gif", 6*vg.Inch); err == nil {
		t.Error("an unknown format drew something")
	}
}
