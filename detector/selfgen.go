package detector

import (
	"math"

	"github.com/emergent-sh/emergent/config"
)

// Inbound states, relative to the seasonal baseline.
const (
	InboundNormal   = "normal"
	InboundSurging  = "surging"
	InboundIdle     = "idle"
	InboundLearning = "learning" // no baseline yet
)

// surgeFactor is how far above its usual level inbound must be to count as a surge; the 3σ
// test alone calls ordinary busy hours surges on quiet, regular series.
const surgeFactor = 2

// noiseSigmas is how many residual standard deviations unexplained work must exceed, so
// ordinary jitter around a learned ratio is never "unexplained".
const noiseSigmas = 3

// classifyInbound says whether inbound is normal, surging or idle against its seasonal usual.
func classifyInbound(in float64, s seasonal, idleBelow float64) string {
	switch {
	case in <= 0 || in <= idleBelow:
		return InboundIdle
	case math.IsNaN(s.Usual):
		return InboundLearning
	case s.Usual > 0 && in < 0.05*s.Usual:
		return InboundIdle
	case in > surgeFactor*s.Usual && in > s.Usual+noiseSigmas*s.Sigma:
		return InboundSurging
	}
	return InboundNormal
}

// expectedWork returns what a signal should do given inbound, and the noise band around it.
// ok is false while a proportional signal has too little history and no max_ratio to fall
// back on: such a group is unknown, not quiet.
func (g *group) expectedWork(s int, sig config.Signal, inbound float64) (expected, sigma float64, ok bool) {
	if sig.Relation == config.RelationBounded {
		return sig.Ceiling, 0, true
	}
	fit, learned := g.fits[s], g.fitOK[s]
	switch {
	case learned:
	case sig.MaxRatio > 0:
		fit = proportionalFit{Ratio: sig.MaxRatio, Floor: sig.MaxFloor}
	default:
		return math.NaN(), math.NaN(), false
	}
	if sig.MaxRatio > 0 {
		fit.Ratio = math.Min(fit.Ratio, sig.MaxRatio)
		fit.AllRatio = math.Min(fit.AllRatio, sig.MaxRatio)
	}
	if sig.MaxFloor > 0 {
		fit.Floor = math.Min(fit.Floor, sig.MaxFloor)
	}
	// Work inbound could explain in full is explained: the learned floor must not turn a surge
	// that work follows into unexplained work.
	expected = math.Max(fit.Ratio*inbound+fit.Floor, fit.AllRatio*inbound)
	return expected, math.Max(fit.Sigma, countingNoise(expected, sig.EventQuantum)), true
}

// countingNoise is the standard deviation of a rate made of Poisson events when expected is
// its mean and quantum what one event adds (1/window): √(events)·quantum. It is never taken
// below one event's worth, so a signal that usually counts nothing in its window does not fire
// on the first two events. The spread learned from history cannot see this: a rate of rare
// events is zero at most points, and so is its median deviation.
func countingNoise(expected, quantum float64) float64 {
	if quantum <= 0 {
		return 0
	}
	return math.Sqrt(math.Max(expected, quantum) * quantum)
}

// evalSelfGenerated compares each work signal with what inbound explains. A group breaches when
// for some signal both the unexplained share and the unexplained rate pass their thresholds
// (scaled by hysteresis while firing) and the excess is beyond the signal's noise.
func (r *Rule) evalSelfGenerated(g *group, key string, in Input) (breach, known bool, ex Explanation) {
	inbound := value(in.Inbound, key)
	if !isNum(inbound) {
		return false, false, ex
	}
	inbound = math.Max(0, inbound)
	season := g.hist.seasonalAt(in.Time.Unix(), 0)
	ex.Inbound, ex.InboundUsual = inbound, season.Usual
	ex.InboundState = classifyInbound(inbound, season, r.cfg.IdleInbound)
	ex.Instances = countInstances(in.Instances[key])

	scale := 1.0
	if g.life.state == StateFiring {
		scale = r.cfg.Hysteresis
	}
	best := -1
	for s, sig := range r.cfg.Signals {
		work, present := math.NaN(), false
		if s < len(in.Signals) {
			work, present = in.Signals[s][key]
		}
		switch {
		case present && !isNum(work):
			return false, false, ex
		case present:
			g.signalSeen[s] = in.Time
		case !g.signalSeen[s].IsZero() && in.Time.Sub(g.signalSeen[s]) < signalGone:
			return false, false, ex // a series that vanished is missing data, not zero work
		default:
			work = 0 // never reported: this group does none of this work
		}
		work = math.Max(0, work)
		expected, sigma, ok := g.expectedWork(s, sig, inbound)
		if !ok {
			return false, false, ex
		}
		unexplained := work - expected
		share := 0.0
		if work > 0 {
			share = math.Max(0, unexplained) / work
		}
		b := share >= r.cfg.MinUnexplainedShare*scale &&
			unexplained >= r.cfg.MinUnexplainedRate*scale &&
			unexplained > noiseSigmas*sigma*scale
		// Headline the breaching signal with the largest unexplained share; near-ties go to the
		// signal listed first, which the rule's author put first for a reason.
		if best < 0 || (b && !breach) || (b == breach && share > ex.UnexplainedShare+shareTie) {
			best, breach = s, b
			ex.Signal, ex.Unit = sig.Name, sig.Unit
			ex.Observed, ex.Expected = work, expected
			ex.Unexplained, ex.UnexplainedShare = unexplained, share
			ex.Bounded = sig.Relation == config.RelationBounded
		}
	}
	return breach, true, ex
}

// shareTie is how much larger an unexplained share must be to take the headline from an
// earlier signal.
const shareTie = 0.05

// countInstances counts the instances doing the work (value above zero) in a breakdown.
func countInstances(vs Values) int {
	n := 0
	for _, v := range vs {
		if isNum(v) && v > 0 {
			n++
		}
	}
	return n
}
