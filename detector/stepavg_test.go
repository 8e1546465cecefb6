package detector

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emergent-sh/emergent/config"
)

// Caches that refresh together do their work in a burst at the same moment of each cycle. A
// history point read at the baseline step alone sees that moment always or never; the mean of
// the step's evaluations sees the work as it is, and the group's level is learned from it
// (fleetsim seed 39101, replica-scaling-14: a sixth to two fifths of its level learned, ten false pages).
func TestHistoryPointsAverageTheirStep(t *testing.T) {
	const step = 30 * time.Second
	base := time.Duration(global(step).BaselineStep)
	perStep := int(base / step)
	quiet := fleetStep{instances: 2, inbound: 5}
	burst := with(quiet, func(s *fleetStep) { s.work = 0.6 }) // two minutes of each step: never at its end
	steps := make([]fleetStep, 12*perStep*6)                  // six hours
	for i := range steps {
		steps[i] = quiet
		if i%perStep >= 2 && i%perStep < 6 {
			steps[i] = burst
		}
	}
	cfg := fleetRule(config.RelationBounded)
	r := NewRule(cfg, global(step))
	evalFleet(r, steps, step)
	g := r.groups[key]
	want := 0.6 * 4 / float64(perStep)
	for i := 1; i <= 3; i++ { // whole steps: the first point holds only its own evaluation
		at := t0.Add(time.Duration(i) * base)
		if got, ok := g.hist.raw(at.Unix(), 1); !ok || got < want*0.99 || got > want*1.01 {
			t.Errorf("history at %s: %g (%v), want the step's mean %g", at.Sub(t0), got, ok, want)
		}
	}
	if lvl := g.signals[0].level.PerInstance * 2; lvl < want*0.99 {
		t.Errorf("learned level %g for the group, under its mean %g", lvl, want)
	}
}

// TestStepAveragedAreTheAveragedColumns: the queries the engine asks averaged over the step are
// exactly those of the columns the shipped rules average while evaluating, or a restart would
// read back other values than a process that never stopped stored.
func TestStepAveragedAreTheAveragedColumns(t *testing.T) {
	cfg, err := config.LoadFile(filepath.Join("..", "rules.toml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range NewRules(cfg.Rules, cfg.Global) {
		var got []string
		for _, c := range r.clock.cols {
			if c.averaged {
				got = append(got, strings.TrimPrefix(r.clock.store.columns[c.store], "sum\x00"))
			}
		}
		want := StepAveraged(r.cfg)
		slices.Sort(got)
		slices.Sort(want)
		if len(want) == 0 || !slices.Equal(got, want) {
			t.Errorf("rule %s: averages %q, the engine asks averaged %q", r.cfg.Name, got, want)
		}
	}
}
