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

// levelSpan bounds the learned level at that many times the history's median per instance.
// Healthy bounded work moves with demand only through lazy refresh (a cache unused for a token
// lifetime does not refresh): its ninetieth percentile was at most 3.1 times its median on the
// healthy services of fleetsim seed 8542 whose median is above zero, 6.0 on six seeds drawn
// later (26675, 42179, 2973, 20937, 47760, 4381). One twenty times the
// median is another regime that held over a tenth of the history: an earlier incident (seed
// 8542, replica-scaling-25, an aggregating endpoint: three incidents in its first day, 80
// times the median, learned as its level, and the next two missed). A median of zero, sparse
// work, bounds nothing. The same span bounds the bursts history teaches the average_over gate
// (Rule.learnAveragePeaks): the earlier incidents were its recurring bursts too.
const levelSpan = 20

// learnLevel learns a bounded level from per-instance values (work / instances per step). Rare
// events are pooled into blocks as fitProportional pools them, so a signal that counts one
// event an hour is not learned as zero; so is any counted signal (a known event quantum), so
// that a window's counting noise at the usual instances is not learned into the level per
// instance, multiplied by the live instances: that noise grows with their square root, and
// baseNoise adds it at the live rate (fleetsim seed 11924, replica-scaling-11: 6 -> 17 pods
// minting twice as often each hid under a level 1.5 times their mean, missed). med is the
// median the level is bounded by (NaN while too little is learned).
func (sc *fitScratch) learnLevel(perInstance []float64, quantum float64) (lvl boundedLevel, med float64, ok bool) {
	lvl = boundedLevel{Points: len(perInstance)}
	if len(perInstance) < minLearnPoints {
		return lvl, math.NaN(), false
	}
	xs := perInstance
	if sparse, counted := zeros(xs) > len(xs)/4, quantum > 0; sparse || counted {
		block := maxFitBlock
		if m := mean(xs); counted && m > 0 {
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
	if med = median(sc.sorted); med > 0 {
		lvl.PerInstance = min(lvl.PerInstance, levelSpan*med)
	}
	// Counted work's spread is taken over the blocks too: what is left of a point's counting
	// noise is countingNoise's, at the live rate (baseNoise).
	if quantum <= 0 {
		xs = perInstance
	}
	sc.rs = append(sc.rs[:0], xs...)
	_, lvl.Sigma = medianMAD(sc.rs)
	return lvl, med, true
}

// quantile returns the q-quantile of xs (nearest rank; NaN for none). xs is reordered.
func quantile(xs []float64, q float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	k := min(len(xs)-1, int(math.Ceil(q*float64(len(xs))))-1)
	return nth(xs, max(0, k))
}
