package detector

import (
	"math"
	"slices"
	"time"
)

// historyClock says which baseline step each ring slot holds, for every group of a rule at
// once: groups share the time grid, so a stamp per group and slot would be a quarter of what a
// group costs for nothing. A slot that moves on to a new step is cleared (NaN) in every group's
// history, so a group without data at that step reads missing, never last week's value.
type historyClock struct {
	stepSec int64
	stamp   []uint32 // 1 + the step number held by each slot; 0 when empty
	members []*history
}

func newHistoryClock(length, step time.Duration) *historyClock {
	return &historyClock{stepSec: int64(step / time.Second), stamp: make([]uint32, int(length/step)+1)}
}

// slot returns the ring index of unix time t and the stamp a slot holding it carries. Step
// numbers fit 32 bits for any step of a second or more until 2106.
func (c *historyClock) slot(unix int64) (int, uint32) {
	k := unix / c.stepSec
	return int(k % int64(len(c.stamp))), uint32(k + 1)
}

// history is one group's ring of coarse samples (one per baseline step), on its rule's clock.
// It is most of the memory a group costs, so it is compact: 16-bit columns (sample16: baselines
// need three significant digits) in one allocation, NaN where nothing was stored.
type history struct {
	clock *historyClock
	cols  [][]sample16 // one column per input series
	// season is the latest seasonalAt, for seasonCol at the step seasonUnix; valid while
	// seasonOK. Every evaluation step of a baseline step reads the same one: computed anew, it
	// was a dozen reads scattered over the ring and a median per group per step. Any store into
	// the history (put, or a slot moving on) drops it.
	season     seasonal
	seasonUnix int64
	seasonCol  int
	seasonOK   bool
}

func newHistory(clock *historyClock, columns int) *history {
	n := len(clock.stamp)
	h := &history{clock: clock, cols: make([][]sample16, columns)}
	data := make([]sample16, n*columns)
	for i := range data {
		data[i] = s16NaN
	}
	for c := range h.cols {
		h.cols[c] = data[c*n : (c+1)*n : (c+1)*n]
	}
	clock.members = append(clock.members, h)
	return h
}

// put stores vals at unix time t (NaN marks a value that must not be learned from). A time
// older than what its slot holds is dropped.
func (h *history) put(unix int64, vals []float64) {
	c := h.clock
	i, k := c.slot(unix)
	switch {
	case c.stamp[i] > k:
		return
	case c.stamp[i] < k: // the slot moves on: clear last cycle's values in every group
		c.stamp[i] = k
		for _, m := range c.members {
			for col := range m.cols {
				m.cols[col][i] = s16NaN
			}
			m.seasonOK = false
		}
	}
	for col, v := range vals {
		h.cols[col][i] = packSample(v)
	}
	h.seasonOK = false
}

// get returns column c at unix time t, if stored.
func (h *history) get(unix int64, c int) (float64, bool) {
	i, stored := h.slotAt(unix)
	if !stored {
		return math.NaN(), false
	}
	v := h.cols[c][i].value()
	return v, isNum(v)
}

// slotAt returns the ring index of unix time t and whether it holds that step.
func (h *history) slotAt(unix int64) (int, bool) {
	i, k := h.clock.slot(unix)
	return i, h.clock.stamp[i] == k
}

// each calls fn for every slot that holds a step (its values may still be NaN for this group).
func (h *history) each(fn func(i int)) {
	for i, k := range h.clock.stamp {
		if k != 0 {
			fn(i)
		}
	}
}

// seasonal is the usual level of a series at a time of day: the median and spread of the same
// time on past days, or of the last hour when fewer than three past days are stored.
type seasonal struct {
	Usual, Sigma float64
	Days         int // past days used; 0 means the recent-history fallback
}

const (
	minSeasonalDays = 3
	maxSeasonalDays = 14
	recentPoints    = 12
)

func (h *history) seasonalAt(unix int64, c int) seasonal {
	unix -= unix % h.clock.stepSec
	if !h.seasonOK || h.seasonUnix != unix || h.seasonCol != c {
		h.season, h.seasonUnix, h.seasonCol, h.seasonOK = h.computeSeasonal(unix, c), unix, c, true
	}
	return h.season
}

// computeSeasonal is seasonalAt without the cache, at a time on the baseline grid.
func (h *history) computeSeasonal(unix int64, c int) seasonal {
	var buf [max(maxSeasonalDays, recentPoints)]float64 // on the stack: this runs every step
	xs := buf[:0]
	for d := int64(1); d <= maxSeasonalDays; d++ {
		if v, ok := h.get(unix-d*86400, c); ok {
			xs = append(xs, v)
		}
	}
	if len(xs) >= minSeasonalDays {
		med, sigma := medianMAD(xs)
		return seasonal{Usual: med, Sigma: sigma, Days: len(xs)}
	}
	xs = xs[:0]
	for k := int64(1); k <= recentPoints; k++ {
		if v, ok := h.get(unix-k*h.clock.stepSec, c); ok {
			xs = append(xs, v)
		}
	}
	med, sigma := medianMAD(xs)
	return seasonal{Usual: med, Sigma: sigma}
}

// proportionalFit is work ≈ Ratio·inbound + Floor, learned robustly from history.
type proportionalFit struct {
	Ratio, Floor float64
	// AllRatio is work per request with no floor: the most of the work inbound can explain.
	// Where inbound varied little, ratio and floor are hard to tell apart, and a fit that put
	// the work in the floor would take a legitimate surge, which work follows, for an anomaly.
	AllRatio float64
	Sigma    float64 // spread of the residuals
	// Peak is the high quantile of single points' residuals: the bursts healthy history holds.
	Peak   float64
	Points int
}

// minFitPoints is the least history (in baseline steps) a learned ratio is trusted from.
const minFitPoints = 12

// fitRounds is how many floor/ratio refinements fitProportional makes.
const fitRounds = 8

// Pooling of sparse signals: a block holds at least minBlockEvents events where the signal's
// event quantum is known (maxFitBlock points otherwise), and at least minFitPoints blocks remain.
const (
	maxFitBlock    = 12
	minBlockEvents = 10
)

// fitProportional learns Ratio and Floor with medians, so a minority of anomalous history (an
// earlier incident) does not move them. The ratio is taken where inbound is at or above its
// median, where the floor matters least; the floor is the median of what the ratio leaves.
// Sigma is the spread of single points around the fit.
//
// A rate of rare events is zero at most single points, and medians over points would learn
// that the service does none of that work; when over a quarter of the points are zero,
// consecutive points are pooled into blocks and the medians are taken over blocks. A block
// holds about minBlockEvents events when quantum (what one event adds to the signal) is known,
// an hour at the default baseline step otherwise: fewer events leave the medians of skewed
// Poisson counts free to put everything in the floor. An earlier incident, contiguous in
// time, still spoils only the blocks it covers.
func fitProportional(inbound, work []float64, quantum float64) (proportionalFit, bool) {
	return new(fitScratch).fit(inbound, work, quantum)
}

// fitScratch holds the buffers of a fit, reused from fit to fit: a rule refits every group
// every hour, and fresh slices for each would be most of what the detector allocates.
type fitScratch struct {
	in, work           []float64 // the history, gathered by relearn
	poolIn, poolWork   []float64
	sorted, ratios, rs []float64
	bursts             []burstSearch // learnAveragePeaks's, one per signal
}

func (sc *fitScratch) fit(inbound, work []float64, quantum float64) (proportionalFit, bool) {
	points := len(inbound)
	if points < minLearnPoints {
		return proportionalFit{Points: points}, false
	}
	fit := proportionalFit{Points: points}
	block := 1
	if zeros(work) > points/4 {
		block = maxFitBlock
		if m := mean(work); quantum > 0 && m > 0 {
			block = int(math.Ceil(minBlockEvents * quantum / m))
		}
		block = max(1, min(block, points/minFitPoints))
	}
	pointIn, pointWork := inbound, work
	if block > 1 {
		sc.poolIn, sc.poolWork = pool(sc.poolIn[:0], inbound, block), pool(sc.poolWork[:0], work, block)
		inbound, work = sc.poolIn, sc.poolWork
	}
	n := len(inbound)
	sc.sorted = append(sc.sorted[:0], inbound...)
	inMed := median(sc.sorted)
	ratios := sc.ratios[:0]
	for i, in := range inbound {
		if in > 0 && in >= inMed {
			ratios = append(ratios, work[i]/in)
		}
	}
	defer func() { sc.ratios = ratios }()
	if len(ratios) == 0 { // inbound never seen: everything is floor
		sc.sorted = append(sc.sorted[:0], work...)
		fit.Floor = median(sc.sorted)
		resid := sc.rs[:0]
		defer func() { sc.rs = resid }()
		for _, w := range pointWork {
			resid = append(resid, w-fit.Floor)
		}
		fit.Sigma, fit.Peak = spreadAndPeak(sc, resid)
		return fit, true
	}
	// Alternate floor and ratio: the ratio taken with floor 0 is biased up by floor/inbound, and a
	// few rounds of medians converge on both without giving outliers a say.
	sc.sorted = append(sc.sorted[:0], ratios...)
	ratio, floor := median(sc.sorted), 0.0
	fit.AllRatio = ratio
	resid := slices.Grow(sc.rs[:0], max(n, len(pointIn)))[:n]
	defer func() { sc.rs = resid }()
	for range fitRounds {
		was := ratio
		for i := range inbound {
			resid[i] = work[i] - ratio*inbound[i]
		}
		floor = math.Max(0, median(resid))
		ratios = ratios[:0]
		for i, in := range inbound {
			if in > 0 && in >= inMed {
				ratios = append(ratios, (work[i]-floor)/in)
			}
		}
		ratio = math.Max(0, median(ratios))
		// A round is a function of the ratio it starts from, so once a round gives back the
		// same ratio every later one repeats it: stopping there learns the same bits.
		if math.Float64bits(ratio) == math.Float64bits(was) {
			break
		}
	}
	fit.Ratio, fit.Floor = ratio, floor
	resid = resid[:0]
	for i, in := range pointIn {
		resid = append(resid, pointWork[i]-fit.Ratio*in-fit.Floor)
	}
	fit.Sigma, fit.Peak = spreadAndPeak(sc, resid)
	return fit, true
}

// peakQuantile is the quantile of single history points' residuals taken as the bursts a
// healthy group has: refreshes in step after a deploy, a stampede at token expiry, a rebuild.
// At the default 15m step it is about the fifth-largest point of a day: a burst that recurs is
// normal, while one seen once — often an earlier incident, since history is not screened for
// episodes — does not widen the band (at 0.99, the largest point of a day, it hid 5 of 33
// replica-scaling incidents on the fleetsim tuning seeds).
const peakQuantile = 0.95

// spreadAndPeak returns the robust spread of xs and their peakQuantile; xs is reordered.
func spreadAndPeak(sc *fitScratch, xs []float64) (sigma, peak float64) {
	sc.sorted = append(sc.sorted[:0], xs...)
	peak = quantile(sc.sorted, peakQuantile)
	_, sigma = medianMAD(xs)
	return sigma, peak
}

func mean(xs []float64) float64 {
	sum := 0.0
	for _, x := range xs {
		sum += x
	}
	return sum / float64(len(xs))
}

func zeros(xs []float64) int {
	n := 0
	for _, x := range xs {
		if x == 0 {
			n++
		}
	}
	return n
}

// pool appends to dst the means of consecutive blocks of size points (the last may be shorter).
func pool(dst, xs []float64, size int) []float64 {
	for i := 0; i < len(xs); i += size {
		block := xs[i:min(i+size, len(xs))]
		sum := 0.0
		for _, x := range block {
			sum += x
		}
		dst = append(dst, sum/float64(len(block)))
	}
	return dst
}
