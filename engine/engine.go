// Package engine steps the detectors through time: it queries a source once per query for all
// the new steps, groups the answers, feeds the detectors and keeps the episodes. The daemon and
// `backtest` both drive it, so they share one evaluation path. It does not deliver alerts.
package engine

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/emergent-sh/emergent/config"
	"github.com/emergent-sh/emergent/detector"
	"github.com/emergent-sh/emergent/sources"
	"github.com/prometheus/common/model"
)

// maxStepsPerQuery keeps every range query under Prometheus's 11 000 points per series limit,
// and bounds how much one catch-up holds in memory.
const maxStepsPerQuery = 1000

// Source is where the engine reads series from.
type Source interface {
	QueryRange(ctx context.Context, query string, r sources.Range) (model.Matrix, sources.Warnings, error)
}

// Engine evaluates every rule of a configuration against a source.
type Engine struct {
	cfg      *config.Config
	src      Source
	logger   *slog.Logger
	interval time.Duration
	metrics  *Metrics

	mu           sync.Mutex // guards everything below; held for a whole Advance
	rules        []*ruleState
	last         time.Time // last evaluated step; zero before Bootstrap
	bootstrapped bool
}

type ruleState struct {
	det        *detector.Rule
	cfg        config.Rule
	blindSince time.Time // first step of the current run of blind steps; zero when seeing
	blind      bool
	// blindEpisodes are resolved blind stretches kept for ResolvedRetention.
	blindEpisodes []blindEpisode
	resolved      []detector.Episode // resolved episodes kept for ResolvedRetention
	known         knownGroups
}

// New prepares an engine; it queries nothing until Bootstrap or Advance. metrics may be nil.
func New(cfg *config.Config, src Source, logger *slog.Logger, metrics *Metrics) *Engine {
	e := &Engine{cfg: cfg, src: src, logger: logger, interval: time.Duration(cfg.Global.EvaluationInterval), metrics: metrics}
	for _, r := range cfg.Rules {
		e.rules = append(e.rules, &ruleState{det: detector.NewRule(r, cfg.Global), cfg: r})
	}
	return e
}

// Config returns the configuration the engine evaluates.
func (e *Engine) Config() *config.Config { return e.cfg }

// Align returns the evaluation step at or before t. Steps are multiples of the interval since
// the Unix epoch, so every replica evaluates the same timestamps.
func Align(t time.Time, step time.Duration) time.Time {
	return t.Truncate(step)
}

// Bootstrapped reports whether history has been loaded.
func (e *Engine) Bootstrapped() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.bootstrapped
}

// Bootstrap learns baselines from global.history before the replay window, then replays the
// window up to now so episodes already under way come back with their original start. It is
// what makes a restarted detector, or a second replica, agree with the first.
func (e *Engine) Bootstrap(ctx context.Context, now time.Time) ([]detector.Event, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	g := e.cfg.Global
	baseStep := time.Duration(g.BaselineStep)
	replayStart := Align(now.Add(-time.Duration(g.Replay)), baseStep)
	histStart := replayStart.Add(-time.Duration(g.History))
	histEnd := replayStart.Add(-baseStep)
	for start := histStart; !start.After(histEnd); start = start.Add(maxStepsPerQuery * baseStep) {
		end := minTime(start.Add((maxStepsPerQuery-1)*baseStep), histEnd)
		steps, err := e.fetch(ctx, sources.Range{Start: start, End: end, Step: baseStep})
		if err != nil {
			return nil, err
		}
		for _, st := range steps {
			for i, r := range e.rules {
				r.det.AddHistory(st.inputs[i])
			}
		}
	}
	e.last = replayStart.Add(-e.interval)
	e.bootstrapped = true
	return e.advance(ctx, now)
}

// Advance evaluates every step after the last one up to now and returns what fired or resolved.
func (e *Engine) Advance(ctx context.Context, now time.Time) ([]detector.Event, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.bootstrapped {
		return nil, fmt.Errorf("engine: Advance before Bootstrap")
	}
	return e.advance(ctx, now)
}

func (e *Engine) advance(ctx context.Context, now time.Time) ([]detector.Event, error) {
	end := Align(now, e.interval)
	var events []detector.Event
	for e.last.Before(end) {
		start := e.last.Add(e.interval)
		chunkEnd := minTime(start.Add((maxStepsPerQuery-1)*e.interval), end)
		began := time.Now()
		steps, err := e.fetch(ctx, sources.Range{Start: start, End: chunkEnd, Step: e.interval})
		if err != nil {
			return events, err
		}
		for _, st := range steps {
			for i, r := range e.rules {
				evs := r.det.Eval(st.inputs[i])
				events = append(events, evs...)
				r.track(st.time, st.inputs[i].Failed, evs, e.cfg.Global)
			}
		}
		e.last = chunkEnd
		e.metrics.observeAdvance(e, len(steps), time.Since(began))
	}
	return events, nil
}

// track keeps resolved episodes for re-sending and follows whether the rule can see its data.
func (r *ruleState) track(t time.Time, failed bool, events []detector.Event, g config.Global) {
	for _, ev := range events {
		if ev.Resolved {
			r.resolved = append(r.resolved, ev.Episode)
		}
	}
	keep := r.resolved[:0]
	for _, ep := range r.resolved {
		if t.Sub(ep.End) <= time.Duration(g.ResolvedRetention) {
			keep = append(keep, ep)
		}
	}
	r.resolved = keep

	blindNow := failed || r.det.AllUnknown()
	switch {
	case !blindNow:
		if r.blind { // the meta-alert resolves now, and is re-sent as resolved for a while
			r.blindEpisodes = append(r.blindEpisodes, blindEpisode{start: r.blindSince.Add(time.Duration(g.BlindAfter)), end: t})
		}
		r.blindSince, r.blind = time.Time{}, false
	case r.blindSince.IsZero():
		r.blindSince = t
	}
	r.blind = blindNow && t.Sub(r.blindSince) >= time.Duration(g.BlindAfter)
	kept := r.blindEpisodes[:0]
	for _, b := range r.blindEpisodes {
		if t.Sub(b.end) <= time.Duration(g.ResolvedRetention) {
			kept = append(kept, b)
		}
	}
	r.blindEpisodes = kept
}

// blindEpisode is a stretch of time a rule could not see its data, from when the meta-alert
// fired to when it saw again.
type blindEpisode struct{ start, end time.Time }

// step is every rule's input at one timestamp.
type step struct {
	time   time.Time
	inputs []detector.Input // by rule index
}

// fetch runs every distinct query once over r, concurrently (the source bounds concurrency),
// and splits the answers into per-step, per-rule inputs.
func (e *Engine) fetch(ctx context.Context, r sources.Range) ([]step, error) {
	queries := e.cfg.Queries()
	results := make([]model.Matrix, len(queries))
	failed := make([]error, len(queries))
	var wg sync.WaitGroup
	for i, q := range queries {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m, warnings, err := e.src.QueryRange(ctx, q, r)
			if err == nil {
				if w := partial(warnings); w != "" {
					err = fmt.Errorf("query %q: partial result: %s", q, w)
				}
			}
			results[i], failed[i] = m, err
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	byQuery := map[string]int{}
	for i, q := range queries {
		byQuery[q] = i
		if failed[i] != nil {
			e.logger.Warn("query failed; its rules see unknown data", "err", failed[i])
			e.metrics.queryFailed()
		}
	}

	n := int(r.End.Sub(r.Start)/r.Step) + 1
	steps := make([]step, n)
	for s := range steps {
		steps[s] = step{time: r.Start.Add(time.Duration(s) * r.Step), inputs: make([]detector.Input, len(e.rules))}
	}
	for ri, rs := range e.rules {
		c := rs.cfg
		anyFailed := false
		for _, q := range c.Queries() {
			anyFailed = anyFailed || failed[byQuery[q]] != nil
		}
		if rs.known.keys == nil || len(rs.known.keys) > maxKnownGroups {
			rs.known.reset()
		}
		g := grouper{by: c.GroupBy, r: r, n: n, labels: map[string]map[string]string{}, known: &rs.known}
		inbound := g.values(results, byQuery, c.Inbound)
		keys := g.values(results, byQuery, c.Keys)
		commands := g.values(results, byQuery, c.Commands)
		writes := g.values(results, byQuery, c.Writes)
		signals := make([][]detector.Values, len(c.Signals))
		for si, sig := range c.Signals {
			signals[si] = g.values(results, byQuery, sig.Query)
		}
		instances := g.breakdown(results, byQuery, c.Instances, func(m model.Metric) string { return string(m[model.LabelName(c.InstanceLabel)]) })
		flushes := g.breakdown(results, byQuery, c.Flushes, func(m model.Metric) string { return m.String() })
		for s := range steps {
			in := detector.Input{
				Time: steps[s].time, Failed: anyFailed, Groups: g.labels,
				Inbound: inbound[s], Keys: keys[s], Commands: commands[s], Writes: writes[s],
				Instances: instances[s], Flushes: flushes[s],
				Signals: make([]detector.Values, len(c.Signals)),
			}
			for si := range c.Signals {
				in.Signals[si] = signals[si][s]
			}
			steps[s].inputs[ri] = in
		}
	}
	return steps, nil
}

// partial returns the warnings that mean data is missing. PromQL info annotations (e.g. "metric
// might not be a counter") are advice, not gaps.
func partial(warnings sources.Warnings) string {
	var out []string
	for _, w := range warnings {
		if !strings.HasPrefix(strings.ToLower(w), "promql info") {
			out = append(out, w)
		}
	}
	return strings.Join(out, "; ")
}

// grouper maps series onto a rule's groups and steps.
type grouper struct {
	by     []string
	r      sources.Range
	n      int
	labels map[string]map[string]string // groups seen in this fetch
	known  *knownGroups
	buf    []byte
}

// knownGroups remembers every group key and label map a rule has seen.
type knownGroups struct {
	keys   map[string]string
	labels map[string]map[string]string
}

// maxKnownGroups bounds the memory of label sets: past it the cache starts over (the cost is
// one allocation per group on the next step), so label churn cannot grow it without bound.
const maxKnownGroups = 1 << 20

func (k *knownGroups) reset() {
	k.keys, k.labels = map[string]string{}, map[string]map[string]string{}
}

// key names a group by its group_by label values. The key is opaque to the detector. Keys and
// label maps are kept across fetches, so a steady fleet allocates nothing per step here.
func (g *grouper) key(m model.Metric) string {
	g.buf = g.buf[:0]
	for _, l := range g.by {
		g.buf = append(g.buf, m[model.LabelName(l)]...)
		g.buf = append(g.buf, 0xff)
	}
	if k, ok := g.known.keys[string(g.buf)]; ok { // no allocation: the compiler elides the conversion
		g.labels[k] = g.known.labels[k]
		return k
	}
	k := string(g.buf)
	labels := make(map[string]string, len(g.by))
	for _, l := range g.by {
		labels[l] = string(m[model.LabelName(l)])
	}
	g.known.keys[k], g.known.labels[k] = k, labels
	g.labels[k] = labels
	return k
}

func (g *grouper) index(ts model.Time) (int, bool) {
	off := ts.Time().Sub(g.r.Start)
	if off < 0 || off%g.r.Step != 0 {
		return 0, false
	}
	i := int(off / g.r.Step)
	return i, i < g.n
}

// values sums each group's series per step. A query that answers one series per group (the
// intended `sum by (...)`) passes through; several series of one group add up.
func (g *grouper) values(results []model.Matrix, byQuery map[string]int, q string) []detector.Values {
	out := make([]detector.Values, g.n)
	for i := range out {
		out[i] = detector.Values{}
	}
	if q == "" {
		return out
	}
	for _, ss := range results[byQuery[q]] {
		k := g.key(ss.Metric)
		for _, p := range ss.Values {
			if i, ok := g.index(p.Timestamp); ok {
				out[i][k] += float64(p.Value)
			}
		}
	}
	return out
}

// breakdown keeps each group's series apart, keyed by sub(metric) (an instance, a counter series).
func (g *grouper) breakdown(results []model.Matrix, byQuery map[string]int, q string, sub func(model.Metric) string) []map[string]detector.Values {
	out := make([]map[string]detector.Values, g.n)
	if q == "" {
		return out
	}
	for _, ss := range results[byQuery[q]] {
		k, id := g.key(ss.Metric), sub(ss.Metric)
		for _, p := range ss.Values {
			i, ok := g.index(p.Timestamp)
			if !ok {
				continue
			}
			if out[i] == nil {
				out[i] = map[string]detector.Values{}
			}
			if out[i][k] == nil {
				out[i][k] = detector.Values{}
			}
			out[i][k][id] += float64(p.Value)
		}
	}
	return out
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// Active returns every active episode, by rule then group.
func (e *Engine) Active() []detector.Episode {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []detector.Episode
	for _, r := range e.rules {
		out = append(out, r.det.Active()...)
	}
	return out
}

// Blind returns the names of rules that have not seen their data for global.blind_after.
func (e *Engine) Blind() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []string
	for _, r := range e.rules {
		if r.blind {
			out = append(out, r.cfg.Name)
		}
	}
	sort.Strings(out)
	return out
}

// LastStep returns the last evaluated step.
func (e *Engine) LastStep() time.Time {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.last
}
