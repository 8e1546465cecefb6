package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"time"

	"github.com/emergent-sh/emergent/config"
	"github.com/emergent-sh/emergent/detector"
	"github.com/emergent-sh/emergent/sources"
	"github.com/prometheus/common/model"
)

// EpisodeStartMetric is the gauge each active episode's start is exported as (like
// Prometheus's ALERTS_FOR_STATE), and read back from Prometheus at start-up.
const EpisodeStartMetric = "emergent_episode_start_timestamp_seconds"

// What else is read back at start-up. The gap is the rest of an open episode's state; the
// others tell whether an earlier process with the same rules was evaluating until recently: then
// what it exported at its last scrape is its whole state, and the replay need only cover what
// the rules remember (see Restore).
const (
	recurrenceGapMetric  = "emergent_episode_recurrence_gap_seconds"
	fingerprintMetric    = "emergent_rule_config_fingerprint"
	historyLoadedMetric  = "emergent_history_loaded"
	lastEvaluationMetric = "emergent_last_evaluation_timestamp_seconds"
)

// exportedPrefix is what Prometheus prepends to a scraped label that clashes with a target
// label (honor_labels: false), e.g. a rule grouped by "instance" or "job".
const exportedPrefix = "exported_"

// Carry remembers episodes an earlier engine had open (a reload that changed the rules hands
// them over), so the next Bootstrap keeps their starts; see detector.Rule.Carry.
func (e *Engine) Carry(episodes []detector.Episode) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, ep := range episodes {
		e.carry(ep.Rule, detector.GroupString(ep.Labels), detector.Carried{Start: ep.Start, RecurrenceGap: ep.RecurrenceGap})
	}
}

func (e *Engine) carry(rule, group string, c detector.Carried) {
	if e.carried == nil {
		e.carried = map[string]map[string]detector.Carried{}
	}
	if e.carried[rule] == nil {
		e.carried[rule] = map[string]detector.Carried{}
	}
	// Two replicas, or a process restarted under another name, may disagree: the earliest
	// start is the episode's.
	if old, ok := e.carried[rule][group]; !ok || c.Start.Before(old.Start) {
		e.carried[rule][group] = c
	}
}

// Restore hands over the state of an earlier process that evaluated these same rules up to
// evaluatedUntil: the episodes it had open then. The next Bootstrap keeps them open with their
// starts and replays only what the rules remember before evaluatedUntil
// (detector.Rule.Memory) instead of global.replay; the history is learned as usual.
func (e *Engine) Restore(episodes []detector.Episode, evaluatedUntil time.Time) {
	e.Carry(episodes)
	e.mu.Lock()
	defer e.mu.Unlock()
	e.restoredUntil = evaluatedUntil
}

// carryFromSource reads back what this or another emergentd exported and Prometheus stored
// within the replay window before now. If a process with the same rules, its history loaded,
// was scraped in it, the episodes open at its last scrape are restored (Restore). Otherwise the
// starts of every episode exported in the window are carried (Carry): an episode last exported
// before the window cannot be told from one that ended unseen, so it is not (Prometheus's alert
// state restore has the same limit, its outage tolerance).
func (e *Engine) carryFromSource(ctx context.Context, now time.Time) (int, error) {
	at := Align(now, e.interval)
	from := Align(now.Add(-time.Duration(e.cfg.Global.Replay)), time.Duration(e.cfg.Global.BaselineStep))
	query := func(q string, r sources.Range) (model.Matrix, error) {
		m, _, err := e.src.QueryRange(ctx, q, r)
		if err != nil {
			return nil, fmt.Errorf("reading episode state back: %w", err)
		}
		return m, nil
	}
	instant := func(t time.Time) sources.Range { return sources.Range{Start: t, End: t, Step: e.interval} }
	last := func(metric string) (model.Matrix, error) {
		return query(fmt.Sprintf("last_over_time(%s[%s])", metric, model.Duration(at.Sub(from))), instant(at))
	}
	fingerprints, err := last(fingerprintMetric)
	if err != nil {
		return 0, err
	}
	loaded, err := last(historyLoadedMetric)
	if err != nil {
		return 0, err
	}
	e.mu.Lock()
	e.restoredUntil = time.Time{}
	e.mu.Unlock()
	if exporters := e.restorers(fingerprints, loaded); len(exporters) > 0 {
		// When the earlier process was last scraped, and what it had evaluated then: every
		// series it exported ends there (Prometheus marks them stale), so what an instant
		// query sees at that scrape is what it had open.
		evaluated, err := query(lastEvaluationMetric, sources.Range{Start: from, End: at, Step: e.interval})
		if err != nil {
			return 0, err
		}
		if scraped, until := lastScrape(evaluated, exporters); !scraped.IsZero() {
			starts, err := query(EpisodeStartMetric, instant(scraped))
			if err != nil {
				return 0, err
			}
			gaps, err := query(recurrenceGapMetric, instant(scraped))
			if err != nil {
				return 0, err
			}
			e.mu.Lock()
			e.restoredUntil = until
			e.mu.Unlock()
			return e.carryAll(starts, gaps), nil
		}
	}
	starts, err := last(EpisodeStartMetric)
	if err != nil {
		return 0, err
	}
	return e.carryAll(starts, nil), nil
}

// seriesGroup returns what names the rule and group of an exported episode series (the
// group by detector.GroupString); ok is false for a rule not configured or a series without
// samples.
func (e *Engine) seriesGroup() func(s *model.SampleStream) (rule, group string, ok bool) {
	groupBy := map[string][]string{}
	for _, r := range e.cfg.Rules {
		groupBy[r.Name] = r.GroupBy
	}
	return func(s *model.SampleStream) (rule, group string, ok bool) {
		rule = labelValue(s.Metric, "rule")
		by, ok := groupBy[rule]
		if !ok || len(s.Values) == 0 {
			return "", "", false
		}
		labels := make(map[string]string, len(by))
		for _, l := range by {
			labels[l] = labelValue(s.Metric, l)
		}
		return rule, detector.GroupString(labels), true
	}
}

// readPast reads back the episodes this or another emergentd exported over the history before
// now, by rule and group, for the history not to teach their steps (detector.Rule.Forget):
// the process that exported them did not learn from them, and one started after it must not
// either, or the two judge differently. Each step of EpisodeStartMetric's series is the start
// of the episode then open; a change of start is the next episode.
func (e *Engine) readPast(ctx context.Context, now time.Time) (int, error) {
	step := time.Duration(e.cfg.Global.BaselineStep)
	// To the step after now: what was exported since the last step (the earlier process's last
	// minutes) shows there.
	to := Align(now, step).Add(step)
	from := to.Add(-time.Duration(e.cfg.Global.History) - time.Duration(e.cfg.Global.Replay))
	// Every episode exported within a step shows at it, however short.
	q := fmt.Sprintf("last_over_time(%s[%s])", EpisodeStartMetric, model.Duration(step))
	m, _, err := e.src.QueryRange(ctx, q, sources.Range{Start: from, End: to, Step: step})
	if err != nil {
		return 0, fmt.Errorf("reading past episodes back: %w", err)
	}
	key, n := e.seriesGroup(), 0
	e.mu.Lock()
	defer e.mu.Unlock()
	e.past = nil
	for _, s := range m {
		rule, group, ok := key(s)
		if !ok {
			continue
		}
		for i, p := range s.Values {
			at := p.Timestamp.Time()
			if i > 0 && p.Value == s.Values[i-1].Value {
				spans := e.past[rule][group]
				spans[len(spans)-1].To = at
				continue
			}
			e.forget(rule, group, detector.Span{From: time.Unix(int64(p.Value), 0), To: at})
			n++
		}
	}
	return n, nil
}

// Forget hands over an earlier process's episodes, ended or open at until, for the next
// Bootstrap's history not to teach their steps (detector.Rule.Forget), as readPast does from
// what Prometheus stored.
func (e *Engine) Forget(episodes []detector.Episode, until time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.past = nil
	for _, ep := range episodes {
		to := until
		if !ep.End.IsZero() && ep.End.Before(until) {
			to = ep.End
		}
		e.forget(ep.Rule, detector.GroupString(ep.Labels), detector.Span{From: ep.Start, To: to})
	}
}

func (e *Engine) forget(rule, group string, sp detector.Span) {
	if e.past == nil {
		e.past = map[string]map[string][]detector.Span{}
	}
	if e.past[rule] == nil {
		e.past[rule] = map[string][]detector.Span{}
	}
	e.past[rule][group] = append(e.past[rule][group], sp)
}

// carryAll carries the episodes whose starts (and recurrence gaps, if any) were read back.
func (e *Engine) carryAll(starts, gaps model.Matrix) int {
	key := e.seriesGroup()
	gapOf := map[[2]string]time.Duration{}
	for _, s := range gaps {
		if rule, group, ok := key(s); ok {
			gapOf[[2]string{rule, group}] = time.Duration(lastValue(s) * float64(time.Second))
		}
	}
	n := 0
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, s := range starts {
		if rule, group, ok := key(s); ok {
			e.carry(rule, group, detector.Carried{Start: time.Unix(int64(lastValue(s)), 0), RecurrenceGap: gapOf[[2]string{rule, group}]})
			n++
		}
	}
	return n
}

// restorers are the processes (by their target labels) whose state can be restored: they ran
// every rule of this configuration with its history loaded. None when any process exported one
// of these rules with other settings: whose open episodes would be whose is not known then.
// A process still loading (this one, scraped since it started, or a replica) has nothing to
// hand over and is left out.
func (e *Engine) restorers(fingerprints, loaded model.Matrix) map[string]bool {
	var out map[string]bool
	for _, r := range e.cfg.Rules {
		want := fingerprint(e.cfg.Global, r)
		for _, s := range fingerprints {
			if labelValue(s.Metric, "rule") == r.Name && len(s.Values) > 0 && lastValue(s) != want {
				return nil
			}
		}
		ready := map[string]bool{}
		for _, s := range loaded {
			if labelValue(s.Metric, "rule") == r.Name && len(s.Values) > 0 && lastValue(s) == 1 {
				if k := target(s.Metric); out == nil || out[k] {
					ready[k] = true
				}
			}
		}
		out = ready
	}
	return out
}

// target identifies the process a series came from: its labels but the metric name and rule.
func target(m model.Metric) string {
	rest := model.Metric{}
	for k, v := range m {
		if k != model.MetricNameLabel && k != "rule" && k != exportedPrefix+"rule" {
			rest[k] = v
		}
	}
	return rest.String()
}

// lastScrape is the latest step at which one of the processes exported its last evaluated step,
// and the earliest such step among those exported then (replaying too much costs time, too
// little a start); zero when none was.
func lastScrape(evaluated model.Matrix, processes map[string]bool) (scraped, until time.Time) {
	for _, s := range evaluated {
		if len(s.Values) == 0 || !processes[target(s.Metric)] {
			continue
		}
		at := s.Values[len(s.Values)-1].Timestamp.Time()
		v := time.Unix(int64(lastValue(s)), 0)
		switch {
		case at.After(scraped):
			scraped, until = at, v
		case at.Equal(scraped) && v.Before(until):
			until = v
		}
	}
	return scraped, until
}

func lastValue(s *model.SampleStream) float64 { return float64(s.Values[len(s.Values)-1].Value) }

// fingerprint identifies what a rule evaluates: its configuration and the global settings its
// state depends on. It is exported, so that a restart can tell whether the state an earlier
// process left was computed by the same rule. 53 bits: a float64 gauge holds them exactly.
func fingerprint(g config.Global, r config.Rule) float64 {
	h := fnv.New64a()
	// Encoding a struct of plain fields cannot fail; a failure would only make fingerprints differ.
	_ = json.NewEncoder(h).Encode(struct {
		Interval, BaselineStep, History model.Duration
		Rule                            config.Rule
	}{g.EvaluationInterval, g.BaselineStep, g.History, r})
	return float64(h.Sum64() >> 11)
}

// labelValue reads a label as emergentd exported it, whether or not Prometheus renamed it.
func labelValue(m model.Metric, name string) string {
	if v, ok := m[model.LabelName(exportedPrefix+name)]; ok {
		return string(v)
	}
	return string(m[model.LabelName(name)])
}
