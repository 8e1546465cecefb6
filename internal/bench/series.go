package bench

import (
	"hash/fnv"
	"math"
	"math/rand/v2"
	"sort"
	"time"
)

// sampler returns a series' value at step i (time t), and whether the series has a sample
// there. It is called for every step in time order, so it may keep state (a counter's total).
type sampler func(i int, t time.Time) (float64, bool)

// series is one output series: a metric family, its label string and how to sample it.
type series struct {
	family string
	labels string // {a="b",...}, sorted by name
	sample sampler
}

// hash64 names a deterministic stream: the same parts give the same number on every machine.
func hash64(parts ...string) uint64 {
	h := fnv.New64a()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0xff})
	}
	return h.Sum64()
}

// splitmix64 scrambles x (Steele, Lea, Flood 2014); noise at a step is a pure function of the
// step, so every series of a service sees the same inbound noise without sharing state.
func splitmix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// unit returns a uniform number in (0, 1) for (seed, i).
func unit(seed uint64, i int64) float64 {
	return (float64(splitmix64(seed^uint64(i)*0x2545f4914f6cdd1d)>>11) + 0.5) / (1 << 53)
}

// gauss returns a standard normal number for (seed, i) (Box–Muller).
func gauss(seed uint64, i int64) float64 {
	u1, u2 := unit(seed, 2*i), unit(seed, 2*i+1)
	return math.Sqrt(-2*math.Log(u1)) * math.Cos(2*math.Pi*u2)
}

// smoothNoise is standard-normal noise that varies smoothly over period (cosine interpolation
// between independent knots), for slow drifts of demand.
func smoothNoise(seed uint64, t time.Time, period time.Duration) float64 {
	x := float64(t.UnixNano()) / float64(period)
	k := math.Floor(x)
	f := x - k
	w := (1 - math.Cos(math.Pi*f)) / 2
	a, b := gauss(seed, int64(k)), gauss(seed, int64(k)+1)
	// The blend of two independent normals has variance w²+(1−w)²; rescale to 1.
	return (a*(1-w) + b*w) / math.Sqrt(w*w+(1-w)*(1-w))
}

// poisson draws a Poisson count with mean mu: counters count events, and their noise is what
// makes low rates (a token a minute) look the way they do in Prometheus.
func poisson(r *rand.Rand, mu float64) float64 {
	switch {
	case !(mu > 0):
		return 0
	case mu > 60:
		return math.Max(0, math.Round(mu+math.Sqrt(mu)*r.NormFloat64()))
	}
	l, k, p := math.Exp(-mu), 0.0, 1.0
	for {
		p *= r.Float64()
		if p <= l {
			return k
		}
		k++
	}
}

// counterSampler integrates rate (events per second, Poisson) into a counter. The counter
// counts through scrape gaps (present false), starts again from 0 at every reset, and has a
// sample only where present is true.
func counterSampler(r *rand.Rand, step time.Duration, rate func(time.Time) float64, present func(time.Time) bool, resets []time.Time) sampler {
	total := 0.0
	started := false
	next := 0
	return func(i int, t time.Time) (float64, bool) {
		if started {
			total += poisson(r, rate(t)*step.Seconds())
		}
		started = true
		for next < len(resets) && !resets[next].After(t) {
			// What was counted since the reset, in the part of the step after it.
			since := t.Sub(resets[next])
			total = poisson(r, rate(t)*since.Seconds())
			next++
		}
		if !present(t) {
			return 0, false
		}
		return total, true
	}
}

// eventCounter counts events since the last reset, like Redis's per-command call counter: the
// series exists only once the command has been called since Redis started, and appears at the
// number of calls so far (usually 1).
func eventCounter(events, resets []time.Time, present func(time.Time) bool) sampler {
	ev, rs := 0, 0
	count := 0.0
	return func(i int, t time.Time) (float64, bool) {
		for {
			// Apply resets and events in time order up to t.
			nextEv, nextRs := time.Time{}, time.Time{}
			if ev < len(events) && !events[ev].After(t) {
				nextEv = events[ev]
			}
			if rs < len(resets) && !resets[rs].After(t) {
				nextRs = resets[rs]
			}
			switch {
			case nextEv.IsZero() && nextRs.IsZero():
				if count < 1 || !present(t) {
					return 0, false
				}
				return count, true
			case nextRs.IsZero() || (!nextEv.IsZero() && nextEv.Before(nextRs)):
				count++
				ev++
			default:
				count = 0
				rs++
			}
		}
	}
}

// span is a time range [From, To).
type span struct {
	From, To time.Time
}

func (s span) has(t time.Time) bool { return !t.Before(s.From) && t.Before(s.To) }

func inAny(spans []span, t time.Time) bool {
	for _, s := range spans {
		if s.has(t) {
			return true
		}
	}
	return false
}

func sortTimes(ts []time.Time) []time.Time {
	sort.Slice(ts, func(i, j int) bool { return ts[i].Before(ts[j]) })
	return ts
}

// draw is the parameter source of one service: every random choice of a scenario comes from it,
// so a seed fixes the whole dataset.
type draw struct{ r *rand.Rand }

func newDraw(seed uint64, name string) draw {
	return draw{rand.New(rand.NewPCG(seed, hash64("params", name)))}
}

func (d draw) uniform(lo, hi float64) float64 { return lo + (hi-lo)*d.r.Float64() }

// logUniform spreads draws evenly over orders of magnitude (request rates, key counts).
func (d draw) logUniform(lo, hi float64) float64 {
	return math.Exp(d.uniform(math.Log(lo), math.Log(hi)))
}

func (d draw) intn(lo, hi int) int { return lo + d.r.IntN(hi-lo+1) }

func (d draw) duration(lo, hi time.Duration) time.Duration {
	return time.Duration(d.uniform(float64(lo), float64(hi))).Truncate(time.Second)
}

func (d draw) logDuration(lo, hi time.Duration) time.Duration {
	return time.Duration(d.logUniform(float64(lo), float64(hi))).Truncate(time.Second)
}

// within returns a time in [from, to−length], or from if the range is too short.
func (d draw) within(from, to time.Time, length time.Duration) time.Time {
	room := to.Sub(from) - length
	if room <= 0 {
		return from
	}
	return from.Add(d.duration(0, room))
}
