package bench

import (
	"math"
	"time"
)

// Episode is one alert episode of one detector on one service, as the scorer sees it.
type Episode struct {
	Detector string
	Kind     string
	Service  string
	Start    time.Time
	// End is when the episode resolved; the zero value means still firing at the end of data.
	End time.Time
	// Summary is emergentd's own account of the episode (empty for anchors), for the evidence.
	Summary string
}

// endOr returns the episode's end, or open for one still firing.
func (e Episode) endOr(open time.Time) time.Time {
	if e.End.IsZero() {
		return open
	}
	return e.End
}

// grid is a range query's time axis.
type grid struct {
	From time.Time
	Step time.Duration
	N    int
}

func (g grid) at(i int) time.Time { return g.From.Add(time.Duration(i) * g.Step) }

// run is a streak of consecutive steps where a rule's condition held: [from, to) in steps.
type run struct{ from, to int }

// runs returns the streaks where v > threshold. A missing value (NaN) is "no sample", so the
// condition is false there, as `expr > threshold` returns no series. +Inf passes (a z-score over
// a flat hour divides by zero).
func runs(vals []float64, threshold float64) []run {
	var out []run
	start := -1
	for i, v := range vals {
		hold := !math.IsNaN(v) && v > threshold
		switch {
		case hold && start < 0:
			start = i
		case !hold && start >= 0:
			out = append(out, run{start, i})
			start = -1
		}
	}
	if start >= 0 {
		out = append(out, run{start, len(vals)})
	}
	return out
}

// ruleEpisodes applies the semantics of Prometheus's rule manager (rules/alerting.go,
// AlertingRule.Eval) to streaks of one series evaluated every grid step:
//   - the alert becomes pending at the first step the expression returns the series
//     (ActiveAt = that step);
//   - at every later step that still returns it, it fires once step − ActiveAt >= for (with
//     for = 0 it fires at the step it became pending);
//   - at the first step that does not return it, a firing alert resolves (ResolvedAt = that
//     step) and a pending one is dropped; a later return starts a new ActiveAt.
//
// An episode runs from the firing step to the resolving step, which is what a receiver sees.
func ruleEpisodes(rs []run, g grid, forDur time.Duration) []Episode {
	var out []Episode
	// First step whose offset from ActiveAt reaches for.
	need := int(math.Ceil(float64(forDur) / float64(g.Step)))
	for _, r := range rs {
		fire := r.from + need
		if fire >= r.to {
			continue
		}
		ep := Episode{Start: g.at(fire)}
		if r.to < g.N {
			ep.End = g.at(r.to)
		}
		out = append(out, ep)
	}
	return out
}
