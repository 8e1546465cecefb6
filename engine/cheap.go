package engine

import (
	"context"
	"maps"
	"slices"
	"time"

	"github.com/emergent-sh/emergent/detector"
	"github.com/emergent-sh/emergent/sources"
	"github.com/prometheus/common/model"
)

// bootstrapCheap is a start-up without an earlier process's state that replays all of
// global.replay (from fullStart) only for the groups that may have done something in it. Every
// group's history is read up to what the rules remember before now and only that is replayed,
// as for a restart (averages warmed from the history); the groups whose history, episodes or
// events there show something a replay from fullStart would judge (detector.Rule.Stirred), and
// those with an episode start read back from the source, are then replayed from fullStart by a
// second engine whose queries select only them (sources.FilteredQuery), and take their state
// from it (detector.Rule.Adopt): their episodes are the full replay's, starts included.
//
// ok is false when it did not apply (the two replays would cover the same steps, too many groups
// stirred, or the second engine failed or read other values than the first for the same groups
// over the steps both evaluated alike); the caller then replays everything. A failed query of
// the first pass is err.
func (e *Engine) bootstrapCheap(ctx context.Context, now, fullStart time.Time) (events []detector.Event, ok bool, err error) {
	short := Align(now.Add(-e.memory()), time.Duration(e.cfg.Global.BaselineStep))
	if !short.After(fullStart) {
		return nil, false, nil
	}
	began := time.Now()
	events, err = e.learnAndReplay(ctx, now, short, replayWarm)
	if err != nil {
		return nil, false, err
	}
	e.mu.Lock()
	stirred, groups := map[string]map[string]string{}, 0
	for _, r := range e.rules {
		maps.Copy(stirred, r.det.Stirred(fullStart, now, e.carried[r.cfg.Name]))
		groups = max(groups, r.det.Groups())
	}
	e.mu.Unlock()
	e.logger.Info("start-up: what the rules remember replayed for every group", "from", short.UTC().Format(time.RFC3339),
		"groups", groups, "stirred_since_replay_start", len(stirred), "took", time.Since(began).Round(time.Millisecond))
	if len(stirred) == 0 {
		return events, true, nil
	}
	if float64(len(stirred)) > e.cheapShare(fullStart, short, now)*float64(groups) {
		e.logger.Info("start-up: too many groups stirred to replay them alone; replaying every group", "stirred", len(stirred), "groups", groups)
		return nil, false, nil
	}
	filter := groupFilter(stirred)
	full := New(e.cfg, filteredSource{src: e.src, filter: filter}, e.logger, nil)
	full.carried, full.past, full.budget = e.carried, e.past, e.budget
	fullEvents, err := full.learnAndReplay(ctx, now, fullStart, replayAll)
	if err != nil && ctx.Err() != nil {
		return nil, false, err
	}
	if err != nil {
		e.logger.Warn("start-up: the replay of the stirred groups failed; replaying every group", "err", err)
		return nil, false, nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	// The history from the first step both built from the same evaluations (the step at short
	// holds the mean of its evaluations from short on, a single one in the first pass), and every
	// query's input at the last step.
	common := short.Add(time.Duration(e.cfg.Global.BaselineStep))
	for i, r := range e.rules {
		if k, differs := r.det.ReadsDiffer(full.rules[i].det, stirred, common, now); differs {
			e.logger.Warn("start-up: the stirred groups' own queries read other series; replaying every group",
				"rule", r.cfg.Name, "group", k)
			return nil, false, nil
		}
	}
	// The narrowed queries may also read groups that were not stirred (a filter by two labels
	// matches their every combination): only the stirred groups' episodes are the second pass's.
	taken := func(ep detector.Episode) bool { return stirred[detector.GroupString(ep.Labels)] != nil }
	for i, r := range e.rules {
		if err := r.det.Adopt(full.rules[i].det, stirred); err != nil {
			e.logger.Warn("start-up: could not take the stirred groups' replay; replaying every group", "err", err)
			return nil, false, nil
		}
		r.resolved = slices.DeleteFunc(r.resolved, taken)
		for _, ep := range full.rules[i].resolved {
			if taken(ep) {
				r.resolved = append(r.resolved, ep)
			}
		}
	}
	events = slices.DeleteFunc(events, func(ev detector.Event) bool { return taken(ev.Episode) })
	for _, ev := range fullEvents {
		if taken(ev.Episode) {
			events = append(events, ev)
		}
	}
	slices.SortStableFunc(events, func(a, b detector.Event) int { return a.At.Compare(b.At) })
	e.logger.Info("start-up: the stirred groups replayed from the replay's start", "from", fullStart.UTC().Format(time.RFC3339),
		"groups", len(stirred), "start_up_took", time.Since(began).Round(time.Millisecond))
	return events, true, nil
}

// cheapShare is the largest share of the groups the replay of the stirred groups pays for: it
// reads their history and replays them from fullStart, where replaying everyone would replay
// from fullStart to short for the rest. Prometheus's cost is about the steps a query covers
// times its series, history steps and evaluation steps alike (BENCHMARKS.md), so past
// (replay steps spared) / (history steps + replay steps) a full replay costs less.
func (e *Engine) cheapShare(fullStart, short, now time.Time) float64 {
	g := e.cfg.Global
	spared := float64(short.Sub(fullStart) / e.interval)
	return spared / (float64(g.History)/float64(g.BaselineStep) + float64(now.Sub(fullStart)/e.interval))
}

// groupFilter is the group label values of groups, per label, for sources.FilteredQuery.
func groupFilter(groups map[string]map[string]string) map[string][]string {
	out := map[string][]string{}
	for _, labels := range groups {
		for name, value := range labels {
			if !slices.Contains(out[name], value) {
				out[name] = append(out[name], value)
			}
		}
	}
	for _, values := range out {
		slices.Sort(values)
	}
	return out
}

// filteredSource asks src every query narrowed to the series of some groups
// (sources.FilteredQuery), averaged over the step where src can (stepAverager).
type filteredSource struct {
	src    Source
	filter map[string][]string
}

func (f filteredSource) QueryRange(ctx context.Context, query string, r sources.Range) (model.Matrix, sources.Warnings, error) {
	q, err := sources.FilteredQuery(query, f.filter)
	if err != nil {
		return nil, nil, err
	}
	return f.src.QueryRange(ctx, q, r)
}

func (f filteredSource) QueryRangeStepAveraged(ctx context.Context, query string, r sources.Range) (model.Matrix, sources.Warnings, error) {
	sa, ok := f.src.(stepAverager)
	if !ok {
		return f.QueryRange(ctx, query, r)
	}
	q, err := sources.FilteredQuery(query, f.filter)
	if err != nil {
		return nil, nil, err
	}
	return sa.QueryRangeStepAveraged(ctx, q, r)
}
