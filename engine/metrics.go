package engine

import (
	"sort"
	"time"

	"github.com/emergent-sh/emergent/detector"
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics is the engine's own health and the per-group numbers users graph. A nil *Metrics
// records nothing, for backtests.
type Metrics struct {
	steps        prometheus.Counter
	duration     prometheus.Histogram
	queryErrors  prometheus.Counter
	lastStep     prometheus.Gauge
	active       *prometheus.GaugeVec
	blind        *prometheus.GaugeVec
	groupsByRule *prometheus.GaugeVec
	history      *prometheus.GaugeVec
	fingerprint  *prometheus.GaugeVec
	empty        *prometheus.GaugeVec
}

// NewMetrics registers the engine's metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		steps: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "emergent_evaluation_steps_total", Help: "Evaluation steps run, over all rules.",
		}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "emergent_evaluation_duration_seconds", Help: "Time to query and evaluate one batch of new steps.",
			Buckets: prometheus.ExponentialBuckets(0.005, 4, 8),
		}),
		queryErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "emergent_evaluation_query_failures_total", Help: "Queries that failed or came back partial; their rules saw unknown data.",
		}),
		lastStep: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: lastEvaluationMetric, Help: "Timestamp of the last evaluated step.",
		}),
		active: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "emergent_active_anomalies", Help: "Active anomaly episodes by rule and kind.",
		}, []string{"rule", "kind"}),
		blind: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "emergent_rule_blind", Help: "1 when the rule has not seen its data for global.blind_after.",
		}, []string{"rule"}),
		groupsByRule: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "emergent_rule_groups", Help: "Groups by rule and state (inactive, pending, firing, unknown, learning).",
		}, []string{"rule", "state"}),
		history: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: historyLoadedMetric, Help: "1 once the rule's history loaded and its replay ran; 0 while loading or retrying after a failure.",
		}, []string{"rule"}),
		fingerprint: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: fingerprintMetric, Help: "Hash of what the rule evaluates (its configuration, the evaluation interval, baseline step and history). Read back at start-up: a process with the same rules restores the state an earlier one left instead of replaying global.replay.",
		}, []string{"rule"}),
		empty: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "emergent_rule_empty_queries", Help: "The rule's inbound and work queries that returned no series at the latest evaluation; the rule watches nothing when inbound or all its work is among them.",
		}, []string{"rule"}),
	}
	reg.MustRegister(m.steps, m.duration, m.queryErrors, m.lastStep, m.active, m.blind, m.groupsByRule, m.history, m.fingerprint, m.empty)
	return m
}

func (m *Metrics) queryFailed() {
	if m != nil {
		m.queryErrors.Inc()
	}
}

func (m *Metrics) observeHistory(e *Engine, loaded bool) {
	if m == nil {
		return
	}
	v := 0.0
	if loaded {
		v = 1
	}
	for _, r := range e.rules {
		m.history.WithLabelValues(r.cfg.Name).Set(v)
		m.fingerprint.WithLabelValues(r.cfg.Name).Set(fingerprint(e.cfg.Global, r.cfg))
	}
}

func (m *Metrics) observeAdvance(e *Engine, steps int, took time.Duration) {
	if m == nil {
		return
	}
	m.steps.Add(float64(steps))
	m.duration.Observe(took.Seconds())
	m.lastStep.Set(float64(e.last.Unix()))
	m.active.Reset()
	m.groupsByRule.Reset()
	for _, r := range e.rules {
		m.active.WithLabelValues(r.cfg.Name, r.cfg.Kind).Set(float64(r.det.ActiveCount()))
		blind := 0.0
		if r.blind {
			blind = 1
		}
		m.blind.WithLabelValues(r.cfg.Name).Set(blind)
		m.empty.WithLabelValues(r.cfg.Name).Set(float64(len(r.empty)))
		counts := r.det.StateCounts()
		for _, st := range []detector.State{detector.StateInactive, detector.StatePending, detector.StateFiring, detector.StateUnknown, detector.StateLearning} {
			m.groupsByRule.WithLabelValues(r.cfg.Name, st.String()).Set(float64(counts[st]))
		}
	}
}

// GroupCollector exports every group's latest numbers, labelled with the rule and the group's
// labels, so users can graph unexplained work next to their own metrics.
type GroupCollector struct {
	engine func() *Engine // the engine in use now; it changes on reload
}

// NewGroupCollector returns a collector reading from whatever engine current returns.
func NewGroupCollector(current func() *Engine) *GroupCollector {
	return &GroupCollector{engine: current}
}

// Describe sends nothing: group label names come from the configuration and change on reload,
// so this is an unchecked collector.
func (c *GroupCollector) Describe(chan<- *prometheus.Desc) {}

// Collect emits the per-group gauges.
func (c *GroupCollector) Collect(ch chan<- prometheus.Metric) {
	e := c.engine()
	if e == nil {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	// One label set for every rule (the union of group_by), so each family is consistent.
	nameSet := map[string]bool{}
	for _, r := range e.rules {
		for _, l := range r.cfg.GroupBy {
			nameSet[l] = true
		}
	}
	names := []string{"rule"}
	for l := range nameSet {
		if l != "rule" {
			names = append(names, l)
		}
	}
	sort.Strings(names[1:])
	desc := func(name, help string) *prometheus.Desc { return prometheus.NewDesc(name, help, names, nil) }
	state := desc("emergent_group_state", "Group state: -1 unknown, 0 inactive, 1 pending, 2 firing, 3 learning (too little history to judge).")
	observed := desc("emergent_observed_work_per_second", "Work rate of the group's most unexplained signal.")
	expected := desc("emergent_expected_work_per_second", "Work rate inbound explains for that signal.")
	share := desc("emergent_unexplained_work_ratio", "Share of work that inbound does not explain (0..1).")
	start := desc(EpisodeStartMetric, "Start of the group's active episode, as a Unix timestamp. Read back at start-up, so a "+
		"restart, a reload or the other replica keeps the episode's start, its Alertmanager startsAt and its Slack thread.")
	gap := desc(recurrenceGapMetric, "Quiet gap after which the active episode's bursts came back when it fired (0: not a recurrence); "+
		"it stays open through that much quiet beyond resolve_for. Read back at start-up with the start.")
	for _, r := range e.rules {
		for _, ep := range r.det.Active() {
			values := labelValues(names, r.cfg.Name, ep.Labels)
			ch <- prometheus.MustNewConstMetric(start, prometheus.GaugeValue, float64(ep.Start.Unix()), values...)
			ch <- prometheus.MustNewConstMetric(gap, prometheus.GaugeValue, ep.RecurrenceGap.Seconds(), values...)
		}
		statuses := r.det.Status()
		for _, s := range statuses {
			if limit := e.cfg.Global.GroupMetricsLimit; limit > 0 && len(statuses) > limit && s.State == detector.StateInactive {
				continue // a large fleet's quiet groups: their series would be most of the page
			}
			values := labelValues(names, r.cfg.Name, s.Labels)
			ch <- prometheus.MustNewConstMetric(state, prometheus.GaugeValue, float64(s.State), values...)
			if s.State == detector.StateUnknown || !r.det.WorkRates() {
				continue
			}
			ch <- prometheus.MustNewConstMetric(observed, prometheus.GaugeValue, s.Explanation.Observed, values...)
			ch <- prometheus.MustNewConstMetric(expected, prometheus.GaugeValue, s.Explanation.Expected, values...)
			ch <- prometheus.MustNewConstMetric(share, prometheus.GaugeValue, s.Explanation.UnexplainedShare, values...)
		}
	}
}

// labelValues orders a group's label values as names ("rule" first, then the union of group_by).
func labelValues(names []string, rule string, labels map[string]string) []string {
	values := make([]string, len(names))
	values[0] = rule
	for i, l := range names[1:] {
		values[i+1] = labels[l]
	}
	return values
}
