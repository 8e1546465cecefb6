package detector

import (
	"math"
	"slices"
	"time"
)

// historyStore holds the coarse samples (one per baseline step) of every group of the rules
// that share it, one column per distinct history query: the rules of one group read inbound
// with the same query, and token-minting's Redis-commands signal is flush-storm's `commands`,
// so each value is kept once (the engine fetches each query once, and hands every rule the same
// answer). The history is most of what a group costs; a copy per rule was 2.7 KB of it
// (BENCHMARKS.md, tenth cut). Rules share a store only if they group alike and share the time
// grid (NewRules).
//
// Each rule keeps its own clock (which step each slot of its ring holds) and, per group, which
// slots it may learn from; a rule reads a column at a step only where the store holds that
// step. The store's ring has one slot more than a rule's, so the step a rule is about to
// replace is still there while another rule of the same evaluation step has already stored the
// new one: rules are evaluated one after the other, each step, and a relearn before a rule's
// own store at a baseline step reads that slot.
type historyStore struct {
	stepSec int64
	stamp   []uint32 // 1 + the step number held by each slot; 0 when empty
	columns []string // what each column holds: how the query is read, then the query
	groups  map[string][]sample16
	members [][]sample16 // every group's columns, to clear a slot that moves on
	rules   int          // the rules reading it (ReadState starts a private store afresh)
}

// newHistoryStore is a store for rules whose history covers length at step.
func newHistoryStore(length, step time.Duration) *historyStore {
	return &historyStore{stepSec: int64(step / time.Second), stamp: make([]uint32, int(length/step)+2), groups: map[string][]sample16{}}
}

// column returns the index of the column holding what query answers, read as read (a "sum", or
// a "count by" an instance label of the series), adding it. Columns are added only while the store has no group
// (NewRules adds every rule's before evaluating any). A query left empty (tests feed inputs by
// maps) is not a query to share: each gets a column of its own.
func (s *historyStore) column(read, query string) int {
	col := read + "\x00" + query
	if i := slices.Index(s.columns, col); i >= 0 && query != "" {
		return i
	}
	if len(s.members) > 0 {
		panic("detector: a history column added to a store with groups")
	}
	s.columns = append(s.columns, col)
	return len(s.columns) - 1
}

// group returns the columns of the group key, all missing when new.
func (s *historyStore) group(key string) []sample16 {
	if data, ok := s.groups[key]; ok {
		return data
	}
	data := make([]sample16, len(s.columns)*len(s.stamp))
	for i := range data {
		data[i] = s16NaN
	}
	s.groups[key] = data
	s.members = append(s.members, data)
	return data
}

// claim returns the store slot of the step with stamp k, moving the slot on to it (clearing
// what every group held there) if it held an older step; false if it holds a newer one.
func (s *historyStore) claim(k uint32) (int, bool) {
	j := s.slotOf(k)
	switch {
	case s.stamp[j] > k:
		return j, false
	case s.stamp[j] < k:
		s.stamp[j] = k
		n := len(s.stamp)
		for _, m := range s.members {
			for c := j; c < len(m); c += n {
				m[c] = s16NaN
			}
		}
	}
	return j, true
}

// slotOf is the store slot of the step with stamp k (k > 0).
func (s *historyStore) slotOf(k uint32) int { return int((k - 1) % uint32(len(s.stamp))) }

// historyColumn is one column of a rule's history: the store column it reads, and whether the
// rule masks it (learn: a signal's work, or Redis commands, at a step that does not teach).
type historyColumn struct {
	store    int
	masked   bool
	averaged bool // each point is the mean over its baseline step (StepAveraged)
}

// historyClock says which baseline step each ring slot holds, for every group of a rule at
// once: groups share the time grid, so a stamp per group and slot would be a quarter of what a
// group costs for nothing. A slot that moves on to a new step reads missing in every group's
// history until the group stores it, so a group without data at that step reads missing,
// never last week's value.
type historyClock struct {
	stepSec int64
	stamp   []uint32 // 1 + the step number held by each slot; 0 when empty
	store   *historyStore
	cols    []historyColumn // the rule's history columns, in its layout (Rule.historyColumns)
	members []*history
}

func newHistoryClock(store *historyStore, cols []historyColumn) *historyClock {
	return &historyClock{stepSec: store.stepSec, stamp: make([]uint32, len(store.stamp)-1), store: store, cols: cols}
}

// slot returns the ring index of unix time t and the stamp a slot holding it carries. Step
// numbers fit 32 bits for any step of a second or more until 2106.
func (c *historyClock) slot(unix int64) (int, uint32) {
	k := unix / c.stepSec
	return int(k % int64(len(c.stamp))), uint32(k + 1)
}

// history is one group's history as its rule sees it: the group's columns in the store, on
// the rule's clock, with the slots the rule may learn its masked columns from. Samples take 16
// bits (sample16: baselines need three significant digits), NaN where nothing was stored.
type history struct {
	clock *historyClock
	data  []sample16 // the group's columns in the store, shared with the store's other rules
	learn []uint64   // a bit per ring slot: the masked columns teach there
	// season is the latest seasonalAt, for seasonCol at the baseline step seasonStep (Unix
	// seconds over the step); valid while seasonOK. Every evaluation step of a baseline step
	// reads the same one: computed anew, it was a dozen reads scattered over the ring and a
	// median per group per step. Any store into the history (put, or a slot moving on) drops
	// it. The three take one word, in 32, 16 and 8 bits, where they took three.
	season     seasonal
	seasonStep uint32
	seasonCol  int16
	seasonOK   bool
}

// newHistory returns the history of the group key on clock.
func newHistory(clock *historyClock, key string) *history {
	h := &history{}
	h.init(clock, key)
	return h
}

// init makes h the history of the group key on clock. h must not move afterwards: the clock
// keeps a pointer to it.
func (h *history) init(clock *historyClock, key string) {
	*h = history{clock: clock, data: clock.store.group(key), learn: make([]uint64, (len(clock.stamp)+63)/64)}
	clock.members = append(clock.members, h)
}

// put stores vals at unix time t, in the rule's column layout, as queried (unmasked: another
// rule may learn from them); learnable says whether the rule's masked columns teach at t. A
// time older than what its slot holds is dropped.
func (h *history) put(unix int64, vals []float64, learnable bool) {
	c := h.clock
	i, k := c.slot(unix)
	switch {
	case c.stamp[i] > k:
		return
	case c.stamp[i] < k: // the slot moves on: last cycle's step no longer teaches in any group
		c.stamp[i] = k
		for _, m := range c.members {
			m.learn[i/64] &^= 1 << (i % 64)
			m.seasonOK = false
		}
	}
	j, ok := c.store.claim(k)
	if !ok { // the store has moved past t: what this rule stores there reads missing
		return
	}
	n := len(c.store.stamp)
	for col, v := range vals {
		h.data[c.cols[col].store*n+j] = packSample(v)
	}
	h.setLearn(i, learnable)
	h.seasonOK = false
}

func (h *history) setLearn(i int, on bool) {
	if on {
		h.learn[i/64] |= 1 << (i % 64)
	} else {
		h.learn[i/64] &^= 1 << (i % 64)
	}
}

// sample is column col at ring slot i as the rule sees it: missing where the slot is empty,
// where the store no longer holds its step, or where a masked column does not teach.
func (h *history) sample(i, col int) sample16 {
	if h.clock.cols[col].masked && h.learn[i/64]&(1<<(i%64)) == 0 {
		return s16NaN
	}
	return h.stored(i, col)
}

// stored is column col at ring slot i as queried, whether or not the step teaches the rule:
// missing where the slot is empty or the store no longer holds its step.
func (h *history) stored(i, col int) sample16 {
	c := h.clock
	k := c.stamp[i]
	if k == 0 {
		return s16NaN
	}
	s := c.store
	j := s.slotOf(k)
	if s.stamp[j] != k {
		return s16NaN
	}
	return h.data[c.cols[col].store*len(s.stamp)+j]
}

// at is column col at ring slot i (NaN where missing).
func (h *history) at(i, col int) float64 { return h.sample(i, col).value() }

// raw is column col at unix time t as queried (stored): the same in a process that learned
// from the step and in one that read it back at start-up. false where the step is not held.
func (h *history) raw(unix int64, col int) (float64, bool) {
	i, held := h.slotAt(unix)
	if !held {
		return math.NaN(), false
	}
	v := h.stored(i, col).value()
	return v, isNum(v)
}

// get returns column c at unix time t, if stored.
func (h *history) get(unix int64, c int) (float64, bool) {
	i, stored := h.slotAt(unix)
	if !stored {
		return math.NaN(), false
	}
	v := h.at(i, c)
	return v, isNum(v)
}

// slotAt returns the ring index of unix time t and whether it holds that step.
func (h *history) slotAt(unix int64) (int, bool) {
	i, k := h.clock.slot(unix)
	return i, h.clock.stamp[i] == k
}

// unixAt is the Unix time of the step slot i holds (each's slots).
func (h *history) unixAt(i int) int64 { return int64(h.clock.stamp[i]-1) * h.clock.stepSec }

// each calls fn for every slot that holds a step (its values may still be NaN for this group).
func (h *history) each(fn func(i int)) {
	for i, k := range h.clock.stamp {
		if k != 0 {
			fn(i)
		}
	}
}

// view appends to dst each column as the rule sees it, one sample per ring slot: the state
// file's layout (groupState.Cols), which kept a private copy of every column per rule.
func (h *history) view(dst [][]sample16) [][]sample16 {
	n := len(h.clock.stamp)
	for col := range h.clock.cols {
		var out []sample16
		if len(dst) > col {
			out = dst[col][:0]
		} else {
			dst = append(dst, nil)
		}
		for i := range n {
			out = append(out, h.sample(i, col))
		}
		dst[col] = out
	}
	return dst[:len(h.clock.cols)]
}

// load stores cols, a view as view wrote it, on the rule's clock (already read): each value
// seen goes into the store's column at its step, and a masked column's value marks its slot as
// one that teaches (where the rule masked it, the view holds no value).
func (h *history) load(cols [][]sample16) {
	c := h.clock
	n := len(c.store.stamp)
	for i, k := range c.stamp {
		if k == 0 {
			continue
		}
		j, ok := c.store.claim(k)
		if !ok {
			continue
		}
		for col, vals := range cols {
			v := vals[i]
			if isNaN16(v) {
				continue
			}
			h.data[c.cols[col].store*n+j] = v
			if c.cols[col].masked {
				h.setLearn(i, true)
			}
		}
	}
	h.seasonOK = false
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
	step := uint32(unix / h.clock.stepSec) // 2^32 steps of 15m are 122 000 years
	if !h.seasonOK || h.seasonStep != step || int(h.seasonCol) != c {
		// A column past 16 bits (a store has a few) is computed anew every time.
		h.season, h.seasonStep, h.seasonCol, h.seasonOK = h.computeSeasonal(unix, c), step, int16(c), c <= math.MaxInt16
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
	blocks             []int32       // each point's block of excessMean, gathered with in and work
	blockSum           []float64     // excessMean's excess summed per block, and its points
	blockSteps         []int
	// levelMedians are the medians per instance relearn's bounded levels were bounded by, one
	// per signal (NaN for none), for learnAveragePeaks to bound the bursts by.
	levelMedians []float64
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
