package main

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"strconv"
	"time"
)

// fleet describes the synthetic services: G services, each with the default signals of
// rules.toml, sampled every histStep before recent and every recentStep from recent to end.
// A few services misbehave from anomalyStart on, so the detectors fire and explain during the
// measured cycles, as they would in a real fleet.
type fleet struct {
	groups       int
	start        time.Time // first sample
	recent       time.Time // full scrape resolution from here
	end          time.Time // last sample (inclusive)
	histStep     time.Duration
	histPair     time.Duration // when set, each history point has a second sample this much earlier
	recentStep   time.Duration
	anomalyStart time.Time
}

// Anomalous services, by index: one in a hundred mints tokens per instance (a non-shared
// cache) and one in a hundred flushes Redis on every upload. Index 3 of every hundred had a
// two-hour token incident three days before the end, which the baselines must not learn.
func fragmented(g int) bool { return g%100 == 1 }
func storming(g int) bool   { return g%100 == 2 }
func pastIncident(g int) bool {
	return g%100 == 3
}

// family is one metric name and its series per service.
type family struct {
	name     string
	labels   []string // label sets per service's series, e.g. `{service="svc-00001"}`
	perGroup int      // series per service
	counter  bool
	// value returns the rate (counters) or the value (gauges) of series s of service g at t.
	value func(f *fleet, g, s int, t time.Time, day float64) float64
}

// seriesPerGroup is how many series each service has (the default signals of rules.toml).
const seriesPerGroup = 9

// families lists the metrics in the order they are written (OpenMetrics wants each family's
// samples together).
func (f *fleet) families() []*family {
	svc := func(g int) string { return fmt.Sprintf("svc-%05d", g) }
	one := func(format string) []string {
		out := make([]string, f.groups)
		for g := range out {
			out[g] = fmt.Sprintf(format, svc(g))
		}
		return out
	}
	two := func(format, a, b string) []string {
		out := make([]string, 2*f.groups)
		for g := range f.groups {
			out[2*g] = fmt.Sprintf(format, a, svc(g))
			out[2*g+1] = fmt.Sprintf(format, b, svc(g))
		}
		return out
	}
	return []*family{
		{name: "http_requests_total", labels: one(`{service="%s"}`), perGroup: 1, counter: true,
			value: func(f *fleet, g, _ int, t time.Time, day float64) float64 { return f.inbound(g, t, day) }},
		{name: "redis_commands_total", labels: two(`{cmd="%s",service="%s"}`, "flushdb", "get"), perGroup: 2, counter: true,
			value: func(f *fleet, g, s int, t time.Time, day float64) float64 {
				storm := storming(g) && !t.Before(f.anomalyStart)
				if s == 0 { // flushdb: one maintenance flush long ago, or one per upload in a storm
					if storm {
						return f.uploads(g, t, day)
					}
					return 0
				}
				perRequest := 3.5
				if storm {
					perRequest = 870 // the rebuild after every flush
				}
				return perRequest*f.inbound(g, t, day) + 0.4 // redis_exporter's own commands
			}},
		{name: "redis_db_keys", labels: one(`{db="db0",service="%s"}`), perGroup: 1,
			value: func(f *fleet, g, _ int, t time.Time, _ float64) float64 {
				keys := 20000 + 2000*noise(g, 7, t)
				if storming(g) && !t.Before(f.anomalyStart) {
					// Collapses to a third after each flush and rebuilds over a minute.
					keys *= 1.0/3 + 2.0/3*float64(t.Unix()%60)/60
				}
				return math.Round(keys)
			}},
		// A per-pod local cache in front of Redis (the shipped rules' optional cache_misses): every
		// group exports one here, the most the signal can cost, where fleetsim gives a quarter.
		{name: "cache_misses_total", labels: one(`{service="%s"}`), perGroup: 1, counter: true,
			value: func(f *fleet, g, _ int, t time.Time, day float64) float64 {
				return 0.25*f.inbound(g, t, day) + 1.5 // misses per request, plus each pod's refreshes
			}},
		{name: "token_cache_misses", labels: one(`{service="%s"}`), perGroup: 1, counter: true,
			value: func(f *fleet, g, _ int, t time.Time, day float64) float64 {
				if f.mintsPerInstance(g, t) {
					return 0.96 * f.inbound(g, t, day)
				}
				return 0.01 * f.inbound(g, t, day)
			}},
		{name: "token_mint_count", labels: two(`{instance="%s",service="%s"}`, "i-0", "i-1"), perGroup: 2, counter: true,
			value: func(f *fleet, g, s int, t time.Time, day float64) float64 {
				if f.mintsPerInstance(g, t) {
					return 0.48 * f.inbound(g, t, day) // every instance mints for itself
				}
				if s == 1 {
					return 0 // shared cache: one instance mints for all
				}
				return math.Min(0.002*f.inbound(g, t, day), 1.0/60)
			}},
		{name: "uploads_total", labels: one(`{service="%s"}`), perGroup: 1, counter: true,
			value: func(f *fleet, g, _ int, t time.Time, day float64) float64 { return f.uploads(g, t, day) }},
	}
}

func (f *fleet) mintsPerInstance(g int, t time.Time) bool {
	if fragmented(g) && !t.Before(f.anomalyStart) {
		return true
	}
	incident := f.end.Add(-72 * time.Hour).Truncate(time.Hour)
	return pastIncident(g) && !t.Before(incident) && t.Before(incident.Add(2*time.Hour))
}

// inbound is a service's request rate: its own size, a daily curve and a little noise.
func (f *fleet) inbound(g int, t time.Time, day float64) float64 {
	return serviceSize(g) * day * (1 + 0.05*noise(g, 1, t))
}

// serviceSize is a service's peak request rate without noise: 2 to 20 requests per second.
func serviceSize(g int) float64 { return 2 + 18*unit(uint64(g)*0x9e3779b97f4a7c15) }

// uploadsPerRequest is the share of requests that upload (and, in a storm, flush Redis).
const uploadsPerRequest = 0.02

func (f *fleet) uploads(g int, t time.Time, day float64) float64 {
	return uploadsPerRequest * f.inbound(g, t, day)
}

// dayCurve is demand over the day: 40 % at night rising to 100 % in the afternoon.
func dayCurve(t time.Time) float64 {
	h := float64(t.Hour()) + float64(t.Minute())/60 + float64(t.Second())/3600
	return 0.4 + 0.6*0.5*(1-math.Cos(2*math.Pi*(h-3)/24))
}

// noise is a deterministic value in [-1, 1) for a service, a stream and a time.
func noise(g, stream int, t time.Time) float64 {
	return 2*unit(uint64(g)<<20^uint64(stream)<<56^uint64(t.Unix())) - 1
}

// unit hashes x to [0, 1) (splitmix64).
func unit(x uint64) float64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	x ^= x >> 31
	return float64(x>>11) / (1 << 53)
}

// times returns the sample times in [from, to), in order: before recent, one point every
// histStep (with a second one histPair earlier, when set); from recent on, every recentStep.
func (f *fleet) times(from, to time.Time) []time.Time {
	var out []time.Time
	add := func(t time.Time) {
		if !t.Before(from) && t.Before(to) && !t.Before(f.start) && !t.After(f.end) {
			out = append(out, t)
		}
	}
	for t := f.start; t.Before(f.recent) && t.Before(to.Add(f.histStep)); t = t.Add(f.histStep) {
		if f.histPair > 0 {
			add(t.Add(-f.histPair))
		}
		add(t)
	}
	for t := f.recent; !t.After(f.end) && t.Before(to); t = t.Add(f.recentStep) {
		add(t)
	}
	return out
}

// samples is the number of samples the fleet holds.
func (f *fleet) samples() int64 {
	return int64(len(f.times(f.start, f.end.Add(time.Nanosecond)))) * int64(f.groups) * seriesPerGroup
}

// generator writes the fleet window by window, carrying counter totals across windows.
type generator struct {
	f        *fleet
	families []*family
	totals   [][]float64 // per family, per series
	last     time.Time   // time of the previous sample (for integrating rates)
	lastSet  bool
}

func newGenerator(f *fleet) *generator {
	g := &generator{f: f, families: f.families()}
	for _, fam := range g.families {
		g.totals = append(g.totals, make([]float64, len(fam.labels)))
	}
	return g
}

// writeWindow writes every sample in [from, to) as OpenMetrics (ending with # EOF) and returns
// how many samples it wrote. Windows must be written in time order.
func (gen *generator) writeWindow(out io.Writer, from, to time.Time) (int64, error) {
	w := bufio.NewWriterSize(out, 1<<20)
	ts := gen.f.times(from, to)
	days := make([]float64, len(ts))
	for i, t := range ts {
		days[i] = dayCurve(t)
	}
	var n int64
	buf := make([]byte, 0, 256)
	for fi, fam := range gen.families {
		fmt.Fprintf(w, "# TYPE %s unknown\n", fam.name)
		totals := gen.totals[fi]
		prev, prevSet := gen.last, gen.lastSet
		for i, t := range ts {
			dt := 0.0
			if prevSet {
				dt = t.Sub(prev).Seconds()
			}
			unix := strconv.AppendInt(nil, t.Unix(), 10)
			for s, labels := range fam.labels {
				g := s / fam.perGroup
				v := fam.value(gen.f, g, s%fam.perGroup, t, days[i])
				if fam.counter {
					if s%fam.perGroup == 0 && fam.name == "redis_commands_total" && totals[s] == 0 {
						totals[s] = 1 // the flushdb series appears at 1: Redis lists a command after its first call
					}
					totals[s] += math.Max(0, v) * dt
					v = math.Floor(totals[s])
				}
				buf = append(buf[:0], fam.name...)
				buf = append(buf, labels...)
				buf = append(buf, ' ')
				buf = strconv.AppendFloat(buf, v, 'f', -1, 64)
				buf = append(buf, ' ')
				buf = append(buf, unix...)
				buf = append(buf, '\n')
				if _, err := w.Write(buf); err != nil {
					return n, err
				}
				n++
			}
			prev, prevSet = t, true
		}
	}
	if len(ts) > 0 {
		gen.last, gen.lastSet = ts[len(ts)-1], true
	}
	if _, err := io.WriteString(w, "# EOF\n"); err != nil {
		return n, err
	}
	return n, w.Flush()
}
