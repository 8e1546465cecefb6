// Package engine steps the detectors through time: it queries a source once per query for all
// the new steps, groups the answers, feeds the detectors and keeps the episodes. The daemon and
// `backtest` both drive it, so they share one evaluation path. It does not deliver alerts.
package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/emergent-sh/emergent/config"
	"github.com/emergent-sh/emergent/detector"
	"github.com/emergent-sh/emergent/sources"
	"github.com/prometheus/common/model"
)

// maxStepsPerQuery is the longest range one query covers (start-up, or catching up after an
// outage; a live step is one). It is far under Prometheus's 11 000 points per series, and for a
// small fleet the number of queries does not depend on the fleet.
const maxStepsPerQuery = 240

// maxSamplesPerQuery sizes a query's range by the fleet: what one answer holds is steps ×
// series, its JSON is decoded whole, and Prometheus's cost and the query timeout grow with it.
// Half a million samples is about 20 MB of JSON, a few seconds of Prometheus CPU: at 10 000
// groups the start-up used 240 steps × 40 000 series, past the shipped 10 s timeout and 2 GB.
const maxSamplesPerQuery = 500_000

// minStepsPerQuery keeps a huge fleet from splitting a range into queries of a step or two,
// whose per-query overhead would dominate.
const minStepsPerQuery = 8

// bootstrapQueries bounds the queries in flight while loading history, under the source's own
// bound: a start-up is many large answers, and two at a time keep its memory and Prometheus's
// load in check while the second overlaps the first's decoding.
const bootstrapQueries = 2

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

	// evalMu serialises Bootstrap and Advance. It is held across queries; mu never is, so
	// /metrics, readiness and the API answer while a query hangs.
	evalMu sync.Mutex
	// Below evalMu, used by the evaluating goroutine only:
	// readStartsBack makes Bootstrap read exported episode starts back from the source.
	readStartsBack bool
	// cheapReplay makes a cold start replay global.replay only for the groups that did
	// something in it (bootstrapCheap).
	cheapReplay bool
	// widest is the most series one query answered at the latest fetch: the next range is
	// sized by it (stepsPerQuery).
	widest int
	// inFlight bounds fetch's concurrent queries (0: the source's bound only).
	inFlight int
	// budget is the samples one answer may hold (maxSamplesPerQuery until a start-up query
	// timed out; halved at each such failure).
	budget int

	mu           sync.Mutex // guards everything below; held for one step's evaluation at most
	rules        []*ruleState
	last         time.Time // last evaluated step; zero before Bootstrap
	bootstrapped bool
	// historyErr is why the last bootstrap failed; nil once history loaded.
	historyErr error
	// carried are episodes an earlier process had open: rule → GroupString → episode.
	carried map[string]map[string]detector.Carried
	// past are the episodes read back over the history, by rule and group (readPast).
	past map[string]map[string][]detector.Span
	// restoredUntil is the last step an earlier process with these rules evaluated (Restore);
	// zero when the replay must cover global.replay.
	restoredUntil time.Time
	// blindStart is when the meta-alert began (some rule blind); zero while every rule sees.
	// One alert covers every blind rule: a Prometheus outage blinds them all at once.
	blindStart time.Time
	// blindEpisodes are resolved blind stretches kept for ResolvedRetention.
	blindEpisodes []blindEpisode
}

type ruleState struct {
	det        *detector.Rule
	cfg        config.Rule
	blindSince time.Time // first step of the current run of blind steps; zero when seeing
	blind      bool
	resolved   []detector.Episode // resolved episodes kept for ResolvedRetention
	known      knownGroups
	// lastErr is the latest failed query of this rule, for the blind alert and the log.
	lastErr error
	// empty lists the rule's queries that returned no series at the latest fetch.
	empty []string
}

// New prepares an engine; it queries nothing until Bootstrap or Advance. metrics may be nil.
func New(cfg *config.Config, src Source, logger *slog.Logger, metrics *Metrics) *Engine {
	e := &Engine{cfg: cfg, src: src, logger: logger, interval: time.Duration(cfg.Global.EvaluationInterval), metrics: metrics}
	e.rules = e.freshRules()
	metrics.observeHistory(e, false)
	return e
}

// freshRules are the configuration's rules with nothing learned. They share their history
// where they group alike (detector.NewRules): every rule is fed the same answers at each step.
func (e *Engine) freshRules() []*ruleState {
	var out []*ruleState
	for i, det := range detector.NewRules(e.cfg.Rules, e.cfg.Global) {
		out = append(out, &ruleState{det: det, cfg: e.cfg.Rules[i]})
	}
	return out
}

// Config returns the configuration the engine evaluates.
func (e *Engine) Config() *config.Config { return e.cfg }

// Align returns the evaluation step at or before t. Steps are multiples of the interval since
// the Unix epoch, so every replica evaluates the same timestamps.
func Align(t time.Time, step time.Duration) time.Time {
	return t.Truncate(step)
}

// ReadStartsBack makes every Bootstrap first read back the episode starts emergentd exported
// (EpisodeStartMetric) from the source, which must then be the Prometheus that scrapes it.
func (e *Engine) ReadStartsBack() { e.readStartsBack = true }

// CheapReplay makes a start-up without an earlier process's state replay all of global.replay
// only for the groups that may have done something in it, and what the rules remember for the
// rest (bootstrapCheap). The source must answer any PromQL (a Prometheus, not a recording).
func (e *Engine) CheapReplay() { e.cheapReplay = true }

// Bootstrapped reports whether history has been loaded.
func (e *Engine) Bootstrapped() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.bootstrapped
}

// HistoryError is why the last attempt to load history failed; nil once it loaded or before
// the first attempt.
func (e *Engine) HistoryError() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.historyErr
}

// Bootstrap learns baselines from global.history before the replay window, then replays the
// window up to now so episodes already under way come back with their original start. It is
// what makes a restarted detector, or a second replica, agree with the first.
//
// Any query that fails fails the bootstrap, and the engine stays as if it had not begun: an
// engine that learned from half its history, or replayed a window it could not see, would
// report wrong normals and new starts for old episodes. The caller retries.
func (e *Engine) Bootstrap(ctx context.Context, now time.Time) ([]detector.Event, error) {
	e.evalMu.Lock()
	defer e.evalMu.Unlock()
	events, err := e.bootstrap(ctx, now)
	if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
		// A query timed out: this Prometheus is slower than the budget assumed. The next attempt
		// asks half as much per query, rather than failing the same way for good.
		e.budget = max(e.budget/2, 1)
		e.logger.Warn("a start-up query timed out; the next attempt asks less per query", "samples_per_query", e.budget)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.historyErr = err
	if err != nil {
		e.rules, e.last, e.bootstrapped = e.freshRules(), time.Time{}, false
		e.metrics.observeHistory(e, false)
		return nil, err
	}
	e.bootstrapped, e.past = true, nil // the history is in: its rules hold what it must not teach
	e.metrics.observeHistory(e, true)
	return events, nil
}

func (e *Engine) bootstrap(ctx context.Context, now time.Time) ([]detector.Event, error) {
	if e.readStartsBack {
		n, err := e.carryFromSource(ctx, now)
		if err != nil {
			return nil, err
		}
		e.logger.Info("episode starts read back from Prometheus", "episodes", n)
		if n, err = e.readPast(ctx, now); err != nil {
			return nil, err
		}
		e.logger.Info("past episodes read back from Prometheus, not learned from", "episodes", n)
	}
	replayStart, restored := e.replayStart(now)
	if !restored && e.cheapReplay {
		if events, ok, err := e.bootstrapCheap(ctx, now, replayStart); err != nil || ok {
			return events, err
		}
	}
	how := replayAll
	if restored {
		how = replayRestored
	}
	return e.learnAndReplay(ctx, now, replayStart, how)
}

// replayMode is how learnAndReplay begins its replay.
type replayMode int

const (
	replayAll      replayMode = iota // from global.replay before now: episodes the source told of are carried (Carry)
	replayRestored                   // from what the rules remember: the episodes an earlier process had open are its (Restore)
	replayWarm                       // from what the rules remember, nothing carried: averages start from the history (bootstrapCheap)
)

// learnAndReplay makes the rules afresh, learns the history before replayStart and evaluates
// every step from there to now.
func (e *Engine) learnAndReplay(ctx context.Context, now, replayStart time.Time, how replayMode) ([]detector.Event, error) {
	g := e.cfg.Global
	baseStep := time.Duration(g.BaselineStep)
	histStart := replayStart.Add(-time.Duration(g.History))
	histEnd := replayStart.Add(-baseStep)
	e.mu.Lock()
	e.rules, e.bootstrapped = e.freshRules(), false
	for _, r := range e.rules {
		episodes := maps.Clone(e.carried[r.cfg.Name])
		switch how {
		case replayRestored:
			r.det.Restore(episodes, replayStart)
		case replayWarm:
			r.det.Restore(nil, replayStart)
		default:
			r.det.Carry(episodes, replayStart.Add(carrySlack(r.cfg, e.interval)))
		}
		r.det.Forget(e.past[r.cfg.Name])
	}
	e.mu.Unlock()
	e.inFlight = bootstrapQueries
	defer func() { e.inFlight = 0 }()
	queries, averaged := e.historyQueries(), e.stepAveraged()
	for start := histStart; !start.After(histEnd); {
		end := minTime(start.Add(time.Duration(e.stepsPerQuery()-1)*baseStep), histEnd)
		r := sources.Range{Start: start, End: end, Step: baseStep}
		if err := e.feedPast(ctx, r, queries, averaged, "history", (*detector.Rule).AddHistory); err != nil {
			return nil, err
		}
		start = end.Add(baseStep)
	}
	if err := e.resetsBefore(ctx, sources.Range{Start: histEnd.Add(e.interval), End: replayStart.Add(-e.interval), Step: e.interval}); err != nil {
		return nil, err
	}
	e.mu.Lock()
	e.last = replayStart.Add(-e.interval)
	e.mu.Unlock()
	events, err := e.advance(ctx, now, true)
	if err != nil {
		return nil, fmt.Errorf("replay from %s: %w", replayStart.UTC().Format(time.RFC3339), err)
	}
	if how == replayRestored {
		events = e.forgetHandled(events)
	}
	return events, nil
}

// resetsBefore reads the cache resets at the evaluation steps of r, those between the history's
// last step and the replay's first, and hands them to the rules (detector.Rule.AddResets): the
// rules hold a reset for cache_refill, and one in that gap, which neither the history's ranges
// nor the replay's reach, would otherwise go unheld into the replay, its refill judged as work.
// Read at the steps a live process evaluated, it is held from the step that process held it from.
func (e *Engine) resetsBefore(ctx context.Context, r sources.Range) error {
	var queries []string
	for _, rule := range e.cfg.Rules {
		if q := rule.CacheResets; q != "" && !slices.Contains(queries, q) {
			queries = append(queries, q)
		}
	}
	if len(queries) == 0 || r.End.Before(r.Start) {
		return nil
	}
	widest := e.widest // the size of the fleet's answers, which this small one is not
	defer func() { e.widest = widest }()
	return e.feedPast(ctx, r, queries, nil, "cache resets before the replay,", (*detector.Rule).AddResets)
}

// feedPast fetches queries over r and hands each step's inputs to add for every rule: the
// start-up's reads of the past, which are learned from, not evaluated. what names the read in
// a failed query's error.
func (e *Engine) feedPast(ctx context.Context, r sources.Range, queries []string, averaged map[string]bool, what string, add func(*detector.Rule, detector.Input)) error {
	b, err := e.fetch(ctx, r, queries, averaged)
	if err != nil {
		return err
	}
	if err := b.failure(); err != nil {
		return fmt.Errorf("%s %s to %s: %w", what, r.Start.UTC().Format(time.RFC3339), r.End.UTC().Format(time.RFC3339), err)
	}
	b.each(func(_ time.Time, inputs []detector.Input) {
		e.mu.Lock()
		defer e.mu.Unlock()
		for i, rs := range e.rules {
			add(rs.det, inputs[i])
		}
	})
	e.recycle(b)
	return nil
}

// forgetHandled drops what a restored replay found ended by the earlier process's last step:
// that process evaluated those steps and delivered those ends, while the replay, which began
// after some of those episodes did, saw only their tails, under later starts.
func (e *Engine) forgetHandled(events []detector.Event) []detector.Event {
	e.mu.Lock()
	defer e.mu.Unlock()
	handled := func(ep detector.Episode) bool { return !ep.End.IsZero() && !ep.End.After(e.restoredUntil) }
	id := func(ep detector.Episode) string {
		return ep.Rule + "/" + detector.GroupString(ep.Labels) + "/" + ep.Start.String()
	}
	ended := map[string]bool{}
	for _, ev := range events {
		if handled(ev.Episode) {
			ended[id(ev.Episode)] = true
		}
	}
	for _, r := range e.rules {
		r.resolved = slices.DeleteFunc(r.resolved, handled)
	}
	return slices.DeleteFunc(events, func(ev detector.Event) bool { return ended[id(ev.Episode)] })
}

// replayStart is where the start-up replay begins: global.replay before now or, when an earlier
// process with these rules handed its state over (Restore), only as far before its last
// evaluated step as the rules remember; restored says which.
func (e *Engine) replayStart(now time.Time) (start time.Time, restored bool) {
	g := e.cfg.Global
	baseStep := time.Duration(g.BaselineStep)
	start = Align(now.Add(-time.Duration(g.Replay)), baseStep)
	e.mu.Lock()
	until := e.restoredUntil
	e.mu.Unlock()
	if until.IsZero() {
		return start, false
	}
	short := Align(minTime(until, now).Add(-e.memory()), baseStep)
	if !short.After(start) {
		return start, false
	}
	e.logger.Info("state restored from an earlier process: the replay covers what the rules remember",
		"evaluated_until", until.UTC().Format(time.RFC3339), "replay_from", short.UTC().Format(time.RFC3339), "instead_of", start.UTC().Format(time.RFC3339))
	return short, true
}

// memory is how far back the rules remember (detector.Rule.Memory): what a replay that
// continues what was learned before it must cover.
func (e *Engine) memory() time.Duration {
	var memory time.Duration
	for _, r := range e.rules {
		memory = max(memory, r.det.Memory())
	}
	return memory
}

// observeFetch keeps each rule's latest query error and empty queries, and logs when a rule
// starts or stops watching nothing: a rule that watches nothing looks exactly like a healthy one.
// Only the latest chunk of a catch-up says what exists now; earlier ones may predate a series.
func (e *Engine) observeFetch(b *batch, latest bool) {
	for i, r := range e.rules {
		rb := b.rules[i]
		if rb.err != nil {
			r.lastErr = rb.err
		} else if rb.overLimit != nil {
			r.lastErr = rb.overLimit
		}
		if !latest {
			continue
		}
		was, now := r.cfg.WatchesNothing(r.empty), r.cfg.WatchesNothing(rb.empty)
		if rb.failed { // a failed query says nothing about what exists
			continue
		}
		switch {
		case now && !was:
			e.logger.Warn("rule watches nothing: its queries return no series", "rule", r.cfg.Name, "queries", rb.empty)
		case was && !now:
			e.logger.Info("rule sees series again", "rule", r.cfg.Name)
		}
		r.empty = rb.empty
	}
}

func errString(err error) string {
	if err == nil {
		return "none"
	}
	return err.Error()
}

// stepsPerQuery is how many steps the next query covers: maxStepsPerQuery while the answers
// are small, fewer as the fleet grows, so an answer stays near maxSamplesPerQuery. Before any
// answer the fleet is unknown, and the first range is a short probe.
func (e *Engine) stepsPerQuery() int {
	if e.widest == 0 {
		return minStepsPerQuery
	}
	if e.budget == 0 {
		e.budget = maxSamplesPerQuery
	}
	return max(minStepsPerQuery, min(maxStepsPerQuery, e.budget/e.widest))
}

// carrySlack is how far into the replay an episode may begin breaching and still be the one an
// earlier process had open: a rate or a flush window needs its range of samples first.
func carrySlack(r config.Rule, interval time.Duration) time.Duration {
	return max(2*interval, time.Duration(r.Window))
}

// Advance evaluates every step after the last one up to now and returns what fired or resolved.
func (e *Engine) Advance(ctx context.Context, now time.Time) ([]detector.Event, error) {
	e.evalMu.Lock()
	defer e.evalMu.Unlock()
	if !e.Bootstrapped() {
		return nil, fmt.Errorf("engine: Advance before Bootstrap")
	}
	return e.advance(ctx, now, false)
}

// advance queries without holding mu and evaluates each step under it. strict makes a failed
// query an error (the replay) instead of a step of unknown data (live evaluation).
func (e *Engine) advance(ctx context.Context, now time.Time, strict bool) ([]detector.Event, error) {
	end := Align(now, e.interval)
	var events []detector.Event
	e.mu.Lock()
	last := e.last
	e.mu.Unlock()
	for last.Before(end) {
		start := last.Add(e.interval)
		chunkEnd := minTime(start.Add(time.Duration(e.stepsPerQuery()-1)*e.interval), end)
		began := time.Now()
		b, err := e.fetch(ctx, sources.Range{Start: start, End: chunkEnd, Step: e.interval}, e.cfg.Queries(), nil)
		if err != nil {
			return events, err
		}
		if strict {
			if err := b.failure(); err != nil {
				return events, err
			}
		}
		b.each(func(t time.Time, inputs []detector.Input) {
			e.mu.Lock()
			defer e.mu.Unlock()
			for i, r := range e.rules {
				evs := r.det.Eval(inputs[i])
				events = append(events, evs...)
				wasBlind := r.blind
				r.track(t, inputs[i].Failed, evs, e.cfg.Global)
				switch {
				case r.blind && !wasBlind:
					e.logger.Error("rule is blind: it has not seen its data", "rule", r.cfg.Name,
						"for", e.cfg.Global.BlindAfter, "last_error", errString(r.lastErr))
				case wasBlind && !r.blind:
					e.logger.Info("rule sees its data again", "rule", r.cfg.Name)
				}
			}
			e.trackBlind(t)
			e.last = t
		})
		last = chunkEnd
		e.mu.Lock()
		e.observeFetch(b, chunkEnd.Equal(end) && !strict) // the replay's past says nothing of now
		e.metrics.observeAdvance(e, b.n, time.Since(began))
		e.mu.Unlock()
		e.recycle(b)
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
		r.blindSince = time.Time{}
	case r.blindSince.IsZero():
		r.blindSince = t
	}
	r.blind = blindNow && t.Sub(r.blindSince) >= time.Duration(g.BlindAfter)
}

// trackBlind follows the meta-alert: it fires when the first rule goes blind, with the start
// of that rule's blindness, and resolves when the last one sees again.
func (e *Engine) trackBlind(t time.Time) {
	g := e.cfg.Global
	var start time.Time
	for _, r := range e.rules {
		if s := r.blindSince.Add(time.Duration(g.BlindAfter)); r.blind && (start.IsZero() || s.Before(start)) {
			start = s
		}
	}
	switch {
	case !start.IsZero() && e.blindStart.IsZero():
		e.blindStart = start
	case start.IsZero() && !e.blindStart.IsZero(): // resolves now, and is re-sent as resolved for a while
		e.blindEpisodes = append(e.blindEpisodes, blindEpisode{start: e.blindStart, end: t})
		e.blindStart = time.Time{}
	}
	kept := e.blindEpisodes[:0]
	for _, b := range e.blindEpisodes {
		if t.Sub(b.end) <= time.Duration(g.ResolvedRetention) {
			kept = append(kept, b)
		}
	}
	e.blindEpisodes = kept
}

// blindEpisode is a stretch of time a rule could not see its data, from when the meta-alert
// fired to when it saw again.
type blindEpisode struct{ start, end time.Time }

// historyQueries are the queries baselines learn from (inbound, work signals, Redis commands,
// live instances) and the cache resets whose refills they must not learn, as evaluation does
// not: the history fetch leaves out the rest, which only evaluation reads.
func (e *Engine) historyQueries() []string {
	var out []string
	for _, r := range e.cfg.Rules {
		for _, q := range append([]string{r.Inbound, r.Commands, r.Replicas, r.ReplicaCount, r.CacheResets}, r.SignalQueries()...) {
			if q != "" && !slices.Contains(out, q) {
				out = append(out, q)
			}
		}
	}
	return out
}

// stepAverager is a source that answers a query averaged over each step (sources.Prometheus
// widens its ranges to the step).
type stepAverager interface {
	QueryRangeStepAveraged(ctx context.Context, query string, r sources.Range) (model.Matrix, sources.Warnings, error)
}

// stepAveraged are the history queries asked as means over the baseline step.
func (e *Engine) stepAveraged() map[string]bool {
	out := map[string]bool{}
	for _, r := range e.cfg.Rules {
		for _, q := range detector.HistoryStepAveraged(r) {
			out[q] = true
		}
	}
	return out
}

// fetch runs each of queries once over r, concurrently (the source bounds concurrency), those
// in averaged as means over each step where the source can answer so (the history's work). The
// answers become per-step inputs one step at a time (batch.each), so a long range costs the
// compact answers, not a map per group, query and step.
func (e *Engine) fetch(ctx context.Context, r sources.Range, queries []string, averaged map[string]bool) (*batch, error) {
	results := make([]model.Matrix, len(queries))
	failed := make([]error, len(queries))
	var wg sync.WaitGroup
	var slots chan struct{} // nil: the source's bound only
	if e.inFlight > 0 {
		slots = make(chan struct{}, e.inFlight)
	}
	for i, q := range queries {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if slots != nil {
				slots <- struct{}{}
				defer func() { <-slots }()
			}
			var m model.Matrix
			var warnings sources.Warnings
			var err error
			if sa, ok := e.src.(stepAverager); ok && averaged[q] {
				m, warnings, err = sa.QueryRangeStepAveraged(ctx, q, r)
			} else {
				m, warnings, err = e.src.QueryRange(ctx, q, r)
			}
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
	e.widest = 0
	for _, m := range results {
		e.widest = max(e.widest, len(m))
	}
	byQuery := map[string]int{}
	for i, q := range queries {
		byQuery[q] = i
		if failed[i] != nil {
			e.logger.Warn("query failed; its rules see unknown data", "err", failed[i])
			e.metrics.queryFailed()
		}
	}

	b := &batch{r: r, n: int(r.End.Sub(r.Start)/r.Step) + 1, rules: make([]*ruleBatch, len(e.rules)), queries: queries, answers: results}
	for ri, rs := range e.rules {
		c := rs.cfg
		rb := &ruleBatch{cfg: c}
		for _, q := range c.Queries() {
			if i, ok := byQuery[q]; ok && failed[i] != nil && rb.err == nil {
				rb.failed, rb.err = true, failed[i]
			}
		}
		for _, q := range c.RequiredQueries() {
			if i, ok := byQuery[q]; ok && failed[i] == nil && len(results[i]) == 0 {
				rb.empty = append(rb.empty, q)
			}
		}
		rs.known.begin()
		g := &grouper{by: c.GroupBy, signals: len(c.Signals), known: &rs.known}
		for _, other := range e.rules {
			if other != rs && slices.Equal(other.cfg.GroupBy, c.GroupBy) {
				g.alike = append(g.alike, &other.known)
			}
		}
		// answer returns q's series; false when q was not fetched.
		answer := func(q string) (model.Matrix, bool) {
			i, ok := byQuery[q]
			if q == "" || !ok {
				return nil, false
			}
			return results[i], true
		}
		// In the order the fetch placed its series before, which is the order Input.Seen lists
		// the groups in.
		sum := func(q string, reading func(*detector.GroupInput) *detector.Reading) {
			if m, ok := answer(q); ok {
				rb.sums = append(rb.sums, g.sums(q, m, reading))
			}
		}
		breakdown := func(q string, part int, id func(*knownGroup, model.Metric) string) {
			if m, ok := answer(q); ok {
				rb.breakdowns = append(rb.breakdowns, g.breakdown(q, m, part, id))
			}
		}
		sum(c.Inbound, func(in *detector.GroupInput) *detector.Reading { return &in.Inbound })
		sum(c.Keys, func(in *detector.GroupInput) *detector.Reading { return &in.Keys })
		sum(c.Commands, func(in *detector.GroupInput) *detector.Reading { return &in.Commands })
		sum(c.Writes, func(in *detector.GroupInput) *detector.Reading { return &in.Writes })
		for i, sig := range c.Signals {
			sum(sig.Query, func(in *detector.GroupInput) *detector.Reading { return &in.Signals[i] })
		}
		byInstance := func(_ *knownGroup, m model.Metric) string { return string(m[model.LabelName(c.InstanceLabel)]) }
		breakdown(c.Instances, partInstances, byInstance)
		breakdown(c.Replicas, partReplicas, byInstance)
		sum(c.CacheResets, func(in *detector.GroupInput) *detector.Reading { return &in.CacheResets })
		sum(c.ReplicaCount, func(in *detector.GroupInput) *detector.Reading { return &in.ReplicaCount })
		breakdown(c.Flushes, partFlushes, (*knownGroup).seriesID)
		rb.seen = rs.known.seen
		if c.Limit > 0 && len(rb.seen) > c.Limit {
			// Not a failed query: the bootstrap goes on, and the rule goes blind with the reason.
			rb.failed, rb.overLimit = true, fmt.Errorf("its queries return %d groups, over its limit of %d", len(rb.seen), c.Limit)
			e.logger.Error("rule over its group limit; it sees unknown data", "rule", c.Name, "groups", len(rb.seen), "limit", c.Limit)
		}
		b.rules[ri] = rb
	}
	return b, nil
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

// WatchingNothing returns, by rule, the required queries that returned no series for rules that
// cannot judge any group because of them.
func (e *Engine) WatchingNothing() map[string][]string {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := map[string][]string{}
	for _, r := range e.rules {
		if r.cfg.WatchesNothing(r.empty) {
			out[r.cfg.Name] = r.empty
		}
	}
	return out
}

// LastStep returns the last evaluated step.
func (e *Engine) LastStep() time.Time {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.last
}
