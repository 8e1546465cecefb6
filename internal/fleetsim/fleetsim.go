// Package fleetsim generates a labelled corpus of Prometheus data for judging detectors of
// self-generated traffic and cache flush storms (internal/fleetsim/SPEC.md). It owns the world
// model — services, pods, deploys, token caches and their provider, the Redis data cache and
// redis_exporter — its simulation, and the dataset it writes: OpenMetrics blocks, truth.jsonl,
// controls.jsonl and dataset.json. Labels follow the simulated physics, never a detector.
//
// Where the spec leaves a choice, or asks for something the physics rules out, this package
// decides as follows:
//
//   - Steady state: a service whose provider keeps fewer tokens than it has caches would be
//     thrashing since before the data, with no onset to label; K is redrawn until it covers the
//     service's caches, so every revocation loop in the corpus has a start.
//   - token_thrash_idle: a daily shape 1 + a·sin with a ≤ 0.8 and weekends ≥ 0.3 never dips
//     under 5 % of the median, so the idle episodes are all "users gone" (demand × 0–0.02, from
//     before the deploy to after the fix); healthy services get the same episodes as controls
//     of type "quiet" (a type the spec's list lacks).
//   - ttl_beyond_lifetime: "every request fails and re-mints until the cache entry expires"
//     means the 401 path mints a token for the request but does not write it to the cache.
//     The revert's code refreshes on a 401 again, so an entry still stale when it lands is
//     replaced at its next use (a shared cache takes the configuration of the deploy's last pod).
//   - ttl_beyond_lifetime: the token cached at the deploy stays valid for a lifetime, so the first
//     stale entry comes a lifetime or more after the incident starts (for a shared cache, a
//     lifetime after its first refresh under the new code, which can be a TTL later). The draw
//     screens with the steady-state rate, but only the simulation knows when each cache's token
//     expired: an incident is labelled only if the simulation counted at least 0.5 mints per
//     minute of stale entries (uses that fail and re-mint) within its span, else it is dropped
//     with a note.
//   - Keyspace: keys are drawn in 1 000 – 2 000 000 but capped at the reads one data TTL sees at
//     median demand (a tiny service cannot keep a million keys warm), at least 10.
//   - Scaling events come in pairs (out and back in, or in and back out), so a service's pod
//     count outside them is its drawn count; the consistency rule compares a scale-out with the
//     service's usual pod count. Incident services draw no healthy scaling near their incident.
//   - Aggregating endpoints count increments (a gateway), so their counters never reset.
//   - The background worker calls at a Poisson rate of one per period per pod, through a random
//     one of the pod's caches.
//   - App restarts have no rate in the spec: 0–2 per day.
//   - Pod-level changes (deploy steps, scaling, restarts, gaps) happen on the scrape grid; flushes,
//     Redis outages and token events keep their exact times.
//   - controls.jsonl holds the healthy events of every service except those overlapping one of
//     the service's own labelled incidents (a detector need not stay silent there).
//   - A flush storm that never reaches three flushes within 10 minutes does not meet its
//     definition and is dropped with a note, as are incidents that never start in the data.
//   - The sample budget cannot hold with the spec's world: pods are log-uniform in 2–25 (about
//     9 on average) and each exports at least six series (two http_requests_total handlers,
//     three token counters, up; most also uploads_total), so 24 services over 2 days give
//     6–11 M samples at a 30 s step rather than ~3 M, and 64 services over 8 days ~100 M
//     rather than ~40 M. The world is kept; dataset.json reports the counts.
package fleetsim

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emergent-sh/emergent/internal/synth"
)

// Options select a dataset. Everything written is a pure function of them.
type Options struct {
	// Seed selects the draw; each service draws from its own generator seeded from (Seed, index).
	Seed uint64
	// Days is the length of the data, at least 2.
	Days int
	// Warm is the history before scoring starts: default 24 h for Days ≤ 3, else 72 h.
	Warm time.Duration
	// Services is how many services to simulate, default 24.
	Services int
	// Step is the scrape interval, a whole number of seconds, default 30 s.
	Step time.Duration
	// End is the end of the data (required), truncated to Step.
	End time.Time
	// NABDir, if set, holds NAB CSVs: a fifth of the services then take their inbound shape from one.
	NABDir string
}

// Truth is one line of truth.jsonl: a labelled incident.
type Truth struct {
	Kind     string `json:"kind"`
	Service  string `json:"service"`
	Start    string `json:"start"`
	End      string `json:"end"`
	Scenario string `json:"scenario"`
	Defined  string `json:"defined"`
}

// Control is one line of controls.jsonl: a healthy event, from its start until its transient
// has settled.
type Control struct {
	Type    string `json:"type"`
	Service string `json:"service"`
	Start   string `json:"start"`
	End     string `json:"end"`
}

// Service describes one service in dataset.json; Kind is empty for controls.
type Service struct {
	Name     string            `json:"name"`
	Scenario string            `json:"scenario"`
	Kind     string            `json:"kind,omitempty"`
	Params   map[string]string `json:"params"`
}

// Dataset is dataset.json.
type Dataset struct {
	Seed     uint64    `json:"seed"`
	Start    string    `json:"start"`
	End      string    `json:"end"`
	Step     string    `json:"step"`
	EvalFrom string    `json:"eval_from"`
	Services []Service `json:"services"`
	Files    []string  `json:"files"`   // OpenMetrics files, in time order
	Samples  int64     `json:"samples"` // samples in the OpenMetrics files
	Bytes    int64     `json:"bytes"`   // size of the OpenMetrics files
	Notes    []string  `json:"notes,omitempty"`
}

// nabFiles are the NAB series services may take their inbound shape from.
var nabFiles = []string{"elb_request_count_8c0756.csv", "Twitter_volume_AAPL.csv", "nyc_taxi.csv"}

// blockSeconds is the span of one OpenMetrics file (spec: two-hour blocks).
const blockSeconds = 7200

// timeline is the dataset's time grid in unix seconds: samples at start + i·dt, i < n.
type timeline struct {
	start, end, evalFrom, dt, days float64
	n                              int
}

func (tl *timeline) at(i int) float64 { return tl.start + float64(i)*tl.dt }

// q moves t up onto the scrape grid.
func (tl *timeline) q(t float64) float64 { return tl.start + math.Ceil((t-tl.start)/tl.dt)*tl.dt }

// resolve applies the defaults and builds the time grid.
func resolve(o Options) (Options, *timeline, error) {
	if o.End.IsZero() {
		return o, nil, errors.New("fleetsim: Options.End is required")
	}
	if o.Days < 2 {
		return o, nil, fmt.Errorf("fleetsim: Days = %d, want at least 2", o.Days)
	}
	if o.Step == 0 {
		o.Step = 30 * time.Second
	}
	if o.Step < time.Second || o.Step%time.Second != 0 || o.Step > blockSeconds*time.Second {
		return o, nil, fmt.Errorf("fleetsim: Step = %s, want whole seconds up to 2h", o.Step)
	}
	if o.Services == 0 {
		o.Services = 24
	}
	if o.Services < 0 || o.Services > 9999 {
		return o, nil, fmt.Errorf("fleetsim: Services = %d, want 1–9999", o.Services)
	}
	if o.Warm == 0 {
		o.Warm = 24 * time.Hour
		if o.Days > 3 {
			o.Warm = 72 * time.Hour
		}
	}
	step := int64(o.Step / time.Second)
	end := o.End.Unix()
	end -= ((end % step) + step) % step
	tl := &timeline{end: float64(end), dt: float64(step), days: float64(o.Days)}
	tl.start = tl.end - float64(o.Days)*day
	tl.evalFrom = tl.start + o.Warm.Seconds()
	tl.n = int((tl.end - tl.start) / tl.dt)
	if o.Warm < 0 || tl.evalFrom+2*3600+1800 >= tl.end {
		return o, nil, fmt.Errorf("fleetsim: Warm = %s leaves no room for incidents in %d days", o.Warm, o.Days)
	}
	return o, tl, nil
}

// Generate writes the dataset for opts into dir: openmetrics/<unix>.om per two-hour block,
// truth.jsonl, controls.jsonl and dataset.json.
func Generate(opts Options, dir string) error {
	_, err := generate(opts, dir)
	return err
}

// generate is Generate, returning the simulated worlds for tests.
func generate(opts Options, dir string) ([]*world, error) {
	opts, tl, err := resolve(opts)
	if err != nil {
		return nil, err
	}
	nabs, err := loadNABs(opts.NABDir)
	if err != nil {
		return nil, err
	}
	worlds := make([]*world, opts.Services)
	sims := make([]*svcSim, opts.Services)
	for i := range worlds {
		worlds[i] = drawWorld(opts.Seed, i, tl, nabs)
		sims[i] = newSim(worlds[i], tl)
	}
	if err := os.MkdirAll(filepath.Join(dir, "openmetrics"), 0o755); err != nil {
		return nil, fmt.Errorf("fleetsim: %w", err)
	}
	ds := Dataset{Seed: opts.Seed, Start: fmtTime(tl.start), End: fmtTime(tl.end), Step: opts.Step.String(), EvalFrom: fmtTime(tl.evalFrom)}
	for i0 := 0; i0 < tl.n; {
		block := int64(tl.at(i0)) / blockSeconds * blockSeconds
		i1 := min(tl.n, int(math.Ceil((float64(block+blockSeconds)-tl.start)/tl.dt)))
		simulate(sims, i0, i1)
		name := "openmetrics/" + strconv.FormatInt(block, 10) + ".om"
		n, size, err := writeBlock(filepath.Join(dir, name), sims)
		if err != nil {
			return nil, err
		}
		ds.Files = append(ds.Files, name)
		ds.Samples += n
		ds.Bytes += size
		i0 = i1
	}
	truth, controls := labels(worlds, tl, &ds)
	if err := writeLines(filepath.Join(dir, "truth.jsonl"), truth); err != nil {
		return nil, err
	}
	if err := writeLines(filepath.Join(dir, "controls.jsonl"), controls); err != nil {
		return nil, err
	}
	raw, err := json.MarshalIndent(ds, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("fleetsim: dataset.json: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "dataset.json"), append(raw, '\n'), 0o644); err != nil {
		return nil, fmt.Errorf("fleetsim: %w", err)
	}
	return worlds, nil
}

// loadNABs loads the NAB series from dir; none without a dir.
func loadNABs(dir string) ([]*nabSeries, error) {
	if dir == "" {
		return nil, nil
	}
	var out []*nabSeries
	for _, f := range nabFiles {
		n, err := synth.LoadNAB(dir, f)
		if err != nil {
			return nil, fmt.Errorf("fleetsim: %w", err)
		}
		out = append(out, &nabSeries{NAB: n, median: n.Median()})
	}
	return out, nil
}

// simulate advances every service through steps [i0, i1), services in parallel: each has its own
// generator and state, so the result does not depend on scheduling.
func simulate(sims []*svcSim, i0, i1 int) {
	ch := make(chan *svcSim)
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), len(sims)) {
		wg.Go(func() {
			for s := range ch {
				for i := i0; i < i1; i++ {
					s.step(i)
				}
			}
		})
	}
	for _, s := range sims {
		ch <- s
	}
	close(ch)
	wg.Wait()
}

// writeBlock writes one OpenMetrics file: families in a fixed order, each contiguous, services in
// order within a family, series in creation order, samples in time order. It returns the samples
// and bytes written and clears the block from the simulations.
func writeBlock(path string, sims []*svcSim) (samples, size int64, err error) {
	f, err := os.Create(path)
	if err != nil {
		return 0, 0, fmt.Errorf("fleetsim: %w", err)
	}
	bw := bufio.NewWriterSize(f, 1<<20)
	var buf []byte
	put := func(b []byte) {
		n, _ := bw.Write(b) // the error sticks in bw and is returned by Flush
		size += int64(n)
	}
	for fam, name := range familyNames {
		header := false
		for _, s := range sims {
			for _, se := range s.series {
				if se.fam != fam || len(se.ts) == 0 {
					continue
				}
				if !header {
					put([]byte("# TYPE " + name + " unknown\n"))
					header = true
				}
				for k, t := range se.ts {
					buf = append(buf[:0], se.key...)
					buf = append(buf, ' ')
					buf = strconv.AppendFloat(buf, se.vs[k], 'f', -1, 64)
					buf = append(buf, ' ')
					buf = strconv.AppendInt(buf, t, 10)
					buf = append(buf, '\n')
					put(buf)
					samples++
				}
			}
		}
	}
	put([]byte("# EOF\n"))
	if err := errors.Join(bw.Flush(), f.Close()); err != nil {
		return 0, 0, fmt.Errorf("fleetsim: writing %s: %w", path, err)
	}
	for _, s := range sims {
		s.flushed()
	}
	return samples, size, nil
}

// labels turns the simulated worlds into truth, controls and the service list: incidents that
// never started or never met their definition are dropped with a note.
func labels(worlds []*world, tl *timeline, ds *Dataset) ([]Truth, []Control) {
	var truth []Truth
	var controls []Control
	for _, w := range worlds {
		ds.Notes = append(ds.Notes, w.notes...)
		svc := Service{Name: w.name, Scenario: w.scenario, Params: w.paramMap()}
		var spans [][2]float64
		for _, inc := range w.incs {
			if inc.start == 0 || inc.start >= tl.end {
				ds.Notes = append(ds.Notes, fmt.Sprintf("%s: %s never started within the data: not labelled", w.name, inc.scenario))
				continue
			}
			if inc.end == 0 || inc.end > tl.end {
				inc.end = tl.end
			}
			if inc.scenario == scTTLBeyond && float64(inc.staleMints) < minExtra*(inc.end-inc.start) {
				ds.Notes = append(ds.Notes, fmt.Sprintf("%s: %s made %d extra mints in its %s (its tokens expired too late in it), under 0.5/min: not labelled",
					w.name, inc.scenario, inc.staleMints, fmtDur(inc.end-inc.start)))
				continue
			}
			defined := inc.start
			if inc.kind == kindFlush {
				defined = thirdFlush(inc.flushes, inc.start, inc.end)
				if defined == 0 {
					ds.Notes = append(ds.Notes, fmt.Sprintf("%s: %s never flushed three times within 10 minutes: not labelled", w.name, inc.scenario))
					continue
				}
			}
			if svc.Kind == "" {
				svc.Kind = inc.kind
			}
			spans = append(spans, [2]float64{inc.start, inc.end})
			truth = append(truth, Truth{Kind: inc.kind, Service: w.name, Start: fmtTime(inc.start), End: fmtTime(inc.end),
				Scenario: inc.scenario, Defined: fmtTime(defined)})
		}
		for _, c := range w.ctls {
			end := c.end
			if end == 0 || end > tl.end {
				end = tl.end
			}
			if c.start >= tl.end || slices.ContainsFunc(spans, func(s [2]float64) bool { return c.start <= s[1] && end >= s[0] }) {
				continue
			}
			controls = append(controls, Control{Type: c.typ, Service: w.name, Start: fmtTime(c.start), End: fmtTime(end)})
		}
		ds.Services = append(ds.Services, svc)
	}
	slices.SortStableFunc(truth, func(a, b Truth) int {
		return strings.Compare(a.Start+a.Service, b.Start+b.Service)
	})
	slices.SortStableFunc(controls, func(a, b Control) int {
		return strings.Compare(a.Start+a.Service+a.Type, b.Start+b.Service+b.Type)
	})
	return truth, controls
}

// thirdFlush is the first flush in [start−1 h, end] that is the third within 10 minutes, no
// earlier than start; 0 if none. Flushes of pods already rolled out count toward it.
func thirdFlush(flushes []float64, start, end float64) float64 {
	fs := slices.Clone(flushes)
	slices.Sort(fs)
	for j := 2; j < len(fs); j++ {
		if fs[j] > end {
			break
		}
		if fs[j] >= start-3600 && fs[j]-fs[j-2] <= 600 {
			return math.Max(fs[j], start)
		}
	}
	return 0
}

// writeLines writes one JSON object per line.
func writeLines[T any](path string, lines []T) error {
	var b []byte
	for _, l := range lines {
		raw, err := json.Marshal(l)
		if err != nil {
			return fmt.Errorf("fleetsim: %s: %w", filepath.Base(path), err)
		}
		b = append(append(b, raw...), '\n')
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return fmt.Errorf("fleetsim: %w", err)
	}
	return nil
}
