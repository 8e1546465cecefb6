package engine

import (
	"context"
	"fmt"
	"time"

	"github.com/emergent-sh/emergent/detector"
	"github.com/emergent-sh/emergent/sources"
	"github.com/prometheus/common/model"
)

// EpisodeStartMetric is the gauge each active episode's start is exported as (like
// Prometheus's ALERTS_FOR_STATE), and read back from Prometheus at start-up.
const EpisodeStartMetric = "emergent_episode_start_timestamp_seconds"

// exportedPrefix is what Prometheus prepends to a scraped label that clashes with a target
// label (honor_labels: false), e.g. a rule grouped by "instance" or "job".
const exportedPrefix = "exported_"

// Carry remembers episodes an earlier engine had open (a reload that changed the rules hands
// them over), so the next Bootstrap keeps their starts; see detector.Rule.Carry.
func (e *Engine) Carry(episodes []detector.Episode) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, ep := range episodes {
		e.carry(ep.Rule, detector.GroupString(ep.Labels), ep.Start)
	}
}

func (e *Engine) carry(rule, group string, start time.Time) {
	if e.carried == nil {
		e.carried = map[string]map[string]time.Time{}
	}
	if e.carried[rule] == nil {
		e.carried[rule] = map[string]time.Time{}
	}
	// Two replicas, or a process restarted under another name, may disagree: the earliest
	// start is the episode's.
	if old, ok := e.carried[rule][group]; !ok || start.Before(old) {
		e.carried[rule][group] = start
	}
}

// carryFromSource reads back the episode starts this or another emergentd exported and
// Prometheus stored within the replay window before now. An episode last exported before the
// window cannot be told from one that ended unseen, so it is not carried (Prometheus's alert
// state restore has the same limit, its outage tolerance).
func (e *Engine) carryFromSource(ctx context.Context, now time.Time) (int, error) {
	at := Align(now, e.interval)
	window := at.Sub(Align(now.Add(-time.Duration(e.cfg.Global.Replay)), time.Duration(e.cfg.Global.BaselineStep)))
	query := fmt.Sprintf("last_over_time(%s[%s])", EpisodeStartMetric, model.Duration(window))
	m, _, err := e.src.QueryRange(ctx, query, sources.Range{Start: at, End: at, Step: e.interval})
	if err != nil {
		return 0, fmt.Errorf("reading episode starts back: %w", err)
	}
	groupBy := map[string][]string{}
	for _, r := range e.cfg.Rules {
		groupBy[r.Name] = r.GroupBy
	}
	n := 0
	for _, s := range m {
		rule := labelValue(s.Metric, "rule")
		by, ok := groupBy[rule]
		if !ok || len(s.Values) == 0 {
			continue
		}
		labels := make(map[string]string, len(by))
		for _, l := range by {
			labels[l] = labelValue(s.Metric, l)
		}
		v := float64(s.Values[len(s.Values)-1].Value)
		e.mu.Lock()
		e.carry(rule, detector.GroupString(labels), time.Unix(int64(v), 0))
		e.mu.Unlock()
		n++
	}
	return n, nil
}

// labelValue reads a label as emergentd exported it, whether or not Prometheus renamed it.
func labelValue(m model.Metric, name string) string {
	if v, ok := m[model.LabelName(exportedPrefix+name)]; ok {
		return string(v)
	}
	return string(m[model.LabelName(name)])
}
