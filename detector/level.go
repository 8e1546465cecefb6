package detector

import "math"

// boundedLevel is what one instance of a group does of a bounded signal while healthy, learned
// from the group's own history: a healthy cache refreshes about once per token lifetime, so
// healthy bounded work scales with the caches (instances) that do it, not with requests, and
// differs by orders of magnitude from fleet to fleet.
type boundedLevel struct {
	PerInstance float64 // upper healthy level per instance, per second
	Sigma       float64 // spread of single points around it, per instance
	Points      int
}

// minLearnPoints is the least history (in baseline steps) a group's level or ratio is learned
// from: an hour at the shipped 15m baseline step, since services are born every day. Until
// then the group is learning and does not page on that signal.
const minLearnPoints = 4

// levelQuantile is the quantile of past per-instance levels taken as the healthy level: lazy
// caches refresh less when traffic is quiet, so the median of a diurnal day sits under the busy
// hours' plateau; the ninetieth percentile still leaves a past anomaly shorter than a tenth of
// the history (episodes are not learned from at all) without a say.
const levelQuantile = 0.9

// learnLevel learns a bounded level from per-instance values (work / instances per step). Rare
// events are pooled into blocks as fitProportional pools them, so a signal that counts one
// event an hour is not learned as zero.
func (sc *fitScratch) learnLevel(perInstance []float64, quantum float64) (boundedLevel, bool) {
	lvl := boundedLevel{Points: len(perInstance)}
	if len(perInstance) < minLearnPoints {
		return lvl, false
	}
	xs := perInstance
	if zeros(xs) > len(xs)/4 {
		block := maxFitBlock
		if m := mean(xs); quantum > 0 && m > 0 {
			block = int(math.Ceil(minBlockEvents * quantum / m))
		}
		block = max(1, min(block, len(xs)/minLearnPoints))
		if block > 1 {
			sc.poolWork = pool(sc.poolWork[:0], xs, block)
			xs = sc.poolWork
		}
	}
	sc.sorted = append(sc.sorted[:0], xs...)
	lvl.PerInstance = quantile(sc.sorted, levelQuantile)
	sc.rs = append(sc.rs[:0], perInstance...)
	_, lvl.Sigma = medianMAD(sc.rs)
	return lvl, true
}

// quantile returns the q-quantile of xs (nearest rank; NaN for none). xs is reordered.
func quantile(xs []float64, q float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	k := min(len(xs)-1, int(math.Ceil(q*float64(len(xs))))-1)
	return nth(xs, max(0, k))
}
