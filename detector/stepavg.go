package detector

import (
	"math"

	"github.com/emergent-sh/emergent/config"
)

// StepAveraged lists the rule's queries whose history points are means over their baseline
// step, for the engine to ask so: the work it learns from (its signals and Redis commands), the
// columns a rule masks and averages (newRule; TestStepAveragedAreTheAveragedColumns keeps the
// two alike). One evaluation's value at each step reads a rate window a fraction of the step
// long, and work that comes in bursts at a fixed phase (caches that refresh together once a
// token lifetime) is then seen always or never: fleetsim seed 39101, replica-scaling-14, two
// pods each minting 13 tokens in the same two minutes of every hour, learned a sixth to two
// fifths of its level and paged ten times. Inbound stays one evaluation's value: requests are dense, and its
// seasonal spread is the live value's.
func StepAveraged(cfg config.Rule) []string {
	out := make([]string, 0, len(cfg.Signals)+1)
	for _, s := range cfg.Signals {
		out = append(out, s.Query)
	}
	if cfg.Commands != "" {
		out = append(out, cfg.Commands)
	}
	return out
}

// HistoryStepAveraged lists the queries the start-up asks averaged over each baseline step:
// StepAveraged's, and the cache resets, which are not a column but read over a range about an
// evaluation interval long: read at the history's step alone it would miss the resets between
// two steps, while its mean over the step is above zero if one happened in it.
func HistoryStepAveraged(cfg config.Rule) []string {
	out := StepAveraged(cfg)
	if cfg.CacheResets != "" {
		out = append(out, cfg.CacheResets)
	}
	return out
}

// stepSum is an averaged history column's sum and count over the baseline step under way, in
// 8 bytes (a history sample keeps three digits; a step holds at most 65 535 evaluations).
type stepSum struct {
	Sum float32
	N   uint16 // exported, as the state file keeps them
}

// addStep adds the group's input at an evaluation step to its averaged columns' sums.
func (g *group) addStep(r *Rule, gi *GroupInput) {
	row := r.historyRow(gi)
	if g.stepSums == nil {
		g.stepSums = make([]stepSum, len(row))
	}
	for c, v := range row {
		if r.clock.cols[c].averaged && !math.IsNaN(v) && g.stepSums[c].N < math.MaxUint16 {
			g.stepSums[c].Sum += float32(v)
			g.stepSums[c].N++
		}
	}
}

// stepRow is the row the group stores at a baseline step: its input there, with each averaged
// column the mean of the step's evaluations (addStep), which it then starts afresh.
func (g *group) stepRow(r *Rule, gi *GroupInput) []float64 {
	row := r.historyRow(gi)
	for c := range g.stepSums {
		if ss := &g.stepSums[c]; ss.N > 0 {
			row[c] = float64(ss.Sum) / float64(ss.N)
			*ss = stepSum{}
		}
	}
	return row
}

// historyQuantum is what one event adds to a history point of signal s: averaged over the
// baseline step, an event counts over the step rather than over its query's window.
func (r *Rule) historyQuantum(s int) float64 {
	sig := r.cfg.Signals[s]
	if sig.EventWindow <= 0 || sig.EventWindow >= r.baselineStep {
		return sig.EventQuantum
	}
	return sig.EventQuantum * sig.EventWindow.Seconds() / r.baselineStep.Seconds()
}
