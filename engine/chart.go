package engine

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/emergent-sh/emergent/detector"
	"github.com/emergent-sh/emergent/sources"
)

// chartPoints is about how many steps a chart holds: a few hundred points fill a page or a
// Slack image, and one query of that size is cheap for any Prometheus.
const chartPoints = 240

// seriesLabel marks which of the rule's queries a series of the chart query answers.
const seriesLabel = "emergent_series"

// Chart is what a group did over a span, next to what emergentd expected of it: inbound, each
// work signal with its band, the live instances, and the group's episodes.
type Chart struct {
	Rule     string
	Kind     string
	Labels   map[string]string
	From, To time.Time
	Inbound  []Point
	// Signals are the work signals (a storm rule's keyspace is its one "signal").
	Signals   []ChartSignal
	Instances []Point
	Episodes  []detector.Episode // active and recently resolved, oldest first
}

// ChartSignal is one work signal: what it did, and the detector's band at each point.
type ChartSignal struct {
	Name, Unit string
	Work       []Point
	// Expected and PageAbove are the detector's band at each work point (NaN where unknown).
	Expected, PageAbove []Point
}

// Point is one sample.
type Point struct {
	T time.Time
	V float64
}

// Chart queries Prometheus once for the group's inbound, work and instances over the span
// before now, and draws the detector's band over them from what the group has learned now.
func (e *Engine) Chart(ctx context.Context, rule string, labels map[string]string, span time.Duration, now time.Time) (*Chart, error) {
	rs := e.ruleState(rule)
	if rs == nil {
		return nil, fmt.Errorf("no rule %q", rule)
	}
	c := rs.cfg
	step := max(e.interval, (span / chartPoints).Truncate(time.Second))
	end := Align(now, step)
	r := sources.Range{Start: end.Add(-span), End: end, Step: step}

	parts := []string{tagged(forGroup(c.Inbound, labels), "inbound")}
	type work struct {
		name, unit, query string
		optional          bool
	}
	var works []work
	for _, s := range c.Signals {
		works = append(works, work{s.Name, s.Unit, s.Query, s.Optional})
	}
	if c.Keys != "" { // a storm's keyspace: what its collapses are
		works = append(works, work{"keyspace", "keys", c.Keys, false})
	}
	for i, w := range works {
		parts = append(parts, tagged(forGroup(w.query, labels), strconv.Itoa(i)))
	}
	if c.Replicas != "" {
		parts = append(parts, tagged("count("+forGroup(c.Replicas, labels)+")", "instances"))
	}
	m, _, err := e.src.QueryRange(ctx, strings.Join(parts, " or "), r)
	if err != nil {
		return nil, fmt.Errorf("chart of rule %q: %w", rule, err)
	}
	byName := map[string][]Point{}
	for _, s := range m {
		name := string(s.Metric[seriesLabel])
		for _, p := range s.Values {
			byName[name] = append(byName[name], Point{T: p.Timestamp.Time().UTC(), V: float64(p.Value)})
		}
	}

	ch := &Chart{Rule: rule, Kind: c.Kind, Labels: labels, From: r.Start, To: r.End,
		Inbound: byName["inbound"], Instances: byName["instances"]}
	inboundAt, instancesAt := pointsAt(ch.Inbound), pointsAt(ch.Instances)
	e.mu.Lock()
	defer e.mu.Unlock()
	for i, w := range works {
		sig := ChartSignal{Name: w.name, Unit: w.unit, Work: byName[strconv.Itoa(i)]}
		if w.optional && len(sig.Work) == 0 {
			continue // work this group does not export (no local cache): no empty panel
		}
		if rs.det.WorkRates() {
			for _, p := range sig.Work {
				n := 1
				if v, ok := instancesAt[p.T]; ok {
					n = int(v)
				}
				b, ok := rs.det.Band(labels, i, inboundAt[p.T], n)
				if !ok {
					b = detector.Band{Expected: math.NaN(), PageAbove: math.NaN()}
				}
				sig.Expected = append(sig.Expected, Point{p.T, b.Expected})
				sig.PageAbove = append(sig.PageAbove, Point{p.T, b.PageAbove})
			}
		}
		ch.Signals = append(ch.Signals, sig)
	}
	// A new slice: appending to rs.resolved could write into its spare capacity.
	for _, ep := range slices.Concat(rs.resolved, rs.det.Active()) {
		if detector.GroupString(ep.Labels) == detector.GroupString(labels) {
			ch.Episodes = append(ch.Episodes, ep)
		}
	}
	return ch, nil
}

// tagged names a query's series in the chart's one query.
func tagged(expr, name string) string {
	return fmt.Sprintf("label_replace(%s, %q, %q, \"\", \"\")", expr, seriesLabel, name)
}

func pointsAt(ps []Point) map[time.Time]float64 {
	out := make(map[time.Time]float64, len(ps))
	for _, p := range ps {
		out[p.T] = p.V
	}
	return out
}

func (e *Engine) ruleState(name string) *ruleState {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, r := range e.rules {
		if r.cfg.Name == name {
			return r
		}
	}
	return nil
}

// Groups is every group of every rule at the latest step, by rule, in group order.
func (e *Engine) Groups() map[string][]detector.GroupStatus {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make(map[string][]detector.GroupStatus, len(e.rules))
	for _, r := range e.rules {
		out[r.cfg.Name] = r.det.Status()
	}
	return out
}

// Resolved returns the episodes resolved within global.resolved_retention, by rule then group.
func (e *Engine) Resolved() []detector.Episode {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []detector.Episode
	for _, r := range e.rules {
		out = append(out, r.resolved...)
	}
	return out
}

// GraphURL links a Prometheus graph of the rule's main signal and inbound for the group, as
// alerts do; "" without a rule of that name or a usable Prometheus URL.
func (e *Engine) GraphURL(rule string, labels map[string]string) string {
	rs := e.ruleState(rule)
	if rs == nil {
		return ""
	}
	return e.graphURL(rs.cfg, labels)
}
