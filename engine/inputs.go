package engine

import (
	"fmt"
	"time"

	"github.com/emergent-sh/emergent/config"
	"github.com/emergent-sh/emergent/detector"
	"github.com/emergent-sh/emergent/sources"
	"github.com/prometheus/common/model"
)

// batch is one fetch's answers, turned into each step's per-rule inputs on demand.
type batch struct {
	r     sources.Range
	n     int
	rules []*ruleBatch
}

// ruleBatch holds one rule's series cursors over one fetch's answers.
type ruleBatch struct {
	cfg                             config.Rule
	failed                          bool
	err                             error    // the first of the rule's queries that failed
	overLimit                       error    // the rule's queries return more groups than its limit
	empty                           []string // the rule's required queries that returned no series
	labels                          map[string]map[string]string
	inbound, keys, commands, writes []seriesCursor
	signals                         [][]seriesCursor
	instances, replicas, flushes    []seriesCursor
	cacheResets                     []seriesCursor
	values                          *inputValues // the rule's, kept across fetches
}

// inputValues are the maps a rule's inputs are built in, reused from step to step and from
// fetch to fetch: the detector copies what it keeps. Built afresh at each fetch, maps of every
// group grew from empty once per query per cycle.
type inputValues struct {
	inbound, keys, commands, writes, cacheResets detector.Values
	signals                                      []detector.Values
	instances                                    breakdownValues
	replicas                                     breakdownValues
	flushes                                      breakdownValues
}

// failure is the first failed query of any rule, nil when every query answered in full.
func (b *batch) failure() error {
	for _, rb := range b.rules {
		if rb.err != nil {
			return fmt.Errorf("rule %q: %w", rb.cfg.Name, rb.err)
		}
	}
	return nil
}

// each calls fn for every step of the batch in time order with every rule's input. The inputs
// and their maps are valid only during the call.
func (b *batch) each(fn func(t time.Time, inputs []detector.Input)) {
	inputs := make([]detector.Input, len(b.rules))
	for s := range b.n {
		t := b.r.Start.Add(time.Duration(s) * b.r.Step)
		ts := model.TimeFromUnixNano(t.UnixNano())
		for ri, rb := range b.rules {
			inputs[ri] = rb.input(t, ts)
		}
		fn(t, inputs)
	}
}

func (rb *ruleBatch) input(t time.Time, ts model.Time) detector.Input {
	v := rb.values
	if len(v.signals) != len(rb.signals) {
		v.signals = make([]detector.Values, len(rb.signals))
	}
	in := detector.Input{
		Time: t, Failed: rb.failed, Groups: rb.labels,
		Inbound: sumAt(rb.inbound, ts, &v.inbound), Keys: sumAt(rb.keys, ts, &v.keys),
		Commands: sumAt(rb.commands, ts, &v.commands), Writes: sumAt(rb.writes, ts, &v.writes),
		Instances: v.instances.at(rb.instances, ts, partInstances), Flushes: v.flushes.at(rb.flushes, ts, partFlushes),
		Replicas: v.replicas.at(rb.replicas, ts, partReplicas), CacheResets: sumAt(rb.cacheResets, ts, &v.cacheResets),
		Signals: make([]detector.Values, len(rb.signals)),
	}
	for i, cur := range rb.signals {
		in.Signals[i] = sumAt(cur, ts, &v.signals[i])
	}
	return in
}

// seriesCursor walks one series' samples in time order.
type seriesCursor struct {
	group  *knownGroup
	id     string // sub-key of a breakdown
	values []model.SamplePair
	next   int
}

// at returns the series' value at ts, advancing past earlier samples; false when it has none.
func (c *seriesCursor) at(ts model.Time) (float64, bool) {
	for c.next < len(c.values) && c.values[c.next].Timestamp < ts {
		c.next++
	}
	if c.next < len(c.values) && c.values[c.next].Timestamp == ts {
		return float64(c.values[c.next].Value), true
	}
	return 0, false
}

// sumAt fills *out (made on first use) with each group's sum at ts. A query that answers one
// series per group (the intended `sum by (...)`) passes through; several series of one group
// add up.
func sumAt(cursors []seriesCursor, ts model.Time, out *detector.Values) detector.Values {
	if *out == nil {
		*out = detector.Values{}
	}
	clear(*out)
	for i := range cursors {
		if v, ok := cursors[i].at(ts); ok {
			(*out)[cursors[i].group.key] += v
		}
	}
	return *out
}

// A group's breakdown maps, one per breakdown query (knownGroup.parts).
const (
	partInstances = iota
	partReplicas
	partFlushes
	breakdowns
)

// breakdownValues builds a breakdown input (each group's series kept apart by sub-key) in the
// groups' own maps for it (knownGroup.parts), reused from step to step.
type breakdownValues struct {
	out map[string]detector.Values
	// step numbers the calls to at, so a group's map is cleared at the first of its series at a
	// step (knownGroup.partStep) without a lookup in out.
	step uint64
}

func (b *breakdownValues) at(cursors []seriesCursor, ts model.Time, part int) map[string]detector.Values {
	if cursors == nil {
		return nil
	}
	if b.out == nil {
		b.out = map[string]detector.Values{}
	}
	clear(b.out)
	b.step++
	for i := range cursors {
		c := &cursors[i]
		v, ok := c.at(ts)
		if !ok {
			continue
		}
		kg := c.group
		m := kg.parts[part]
		if kg.partStep[part] != b.step { // first series of this group at this step: start its map afresh
			if m == nil {
				m = detector.Values{}
				kg.parts[part] = m
			}
			clear(m)
			kg.partStep[part] = b.step
			b.out[kg.key] = m
		}
		m[c.id] += v
	}
	return b.out
}

// grouper maps series onto a rule's groups.
type grouper struct {
	by    []string
	known *knownGroups
	buf   []byte
}

// knownGroup is a group a rule has seen, kept across fetches so a steady fleet allocates
// nothing for it per step or fetch.
type knownGroup struct {
	key    string
	labels map[string]string
	seen   uint64 // the latest fetch (knownGroups.fetch) that saw the group
	// parts are the group's breakdown maps (instances, replicas, flushes), reused from step to
	// step; partStep says at which breakdownValues.step each was last started.
	parts    [breakdowns]detector.Values
	partStep [breakdowns]uint64
}

// knownGroups remembers every group a rule has seen, and which groups its latest fetch saw.
type knownGroups struct {
	byKey map[string]*knownGroup
	fetch uint64 // numbers the fetches
	// groups maps each group the latest fetch saw to its labels (Input.Groups). A fetch that
	// sees the same groups keeps it: rebuilt at each fetch, it was a map of every group.
	groups map[string]map[string]string
	seen   []*knownGroup // the groups the fetch under way saw, in the order it saw them
	// changed says the fetch under way saw a group the one before did not.
	changed bool
}

// maxKnownGroups bounds the memory of label sets: past it the cache starts over (the cost is
// one allocation per group on the next step), so label churn cannot grow it without bound.
const maxKnownGroups = 1 << 20

// begin starts a fetch: the groups its series map onto are counted from here.
func (k *knownGroups) begin() {
	if k.byKey == nil || len(k.byKey) > maxKnownGroups {
		k.byKey, k.groups = map[string]*knownGroup{}, nil
	}
	k.fetch++
	k.seen, k.changed = k.seen[:0], false
}

// end returns the groups the fetch saw, by key: the latest fetch's map when they are the same.
func (k *knownGroups) end() map[string]map[string]string {
	if k.groups == nil || k.changed || len(k.seen) != len(k.groups) {
		k.groups = make(map[string]map[string]string, len(k.seen))
		for _, kg := range k.seen {
			k.groups[kg.key] = kg.labels
		}
	}
	return k.groups
}

// group finds the group of a series by its group_by label values (the key is opaque to the
// detector), and notes that the fetch saw it.
func (g *grouper) group(m model.Metric) *knownGroup {
	g.buf = g.buf[:0]
	for _, l := range g.by {
		g.buf = append(g.buf, m[model.LabelName(l)]...)
		g.buf = append(g.buf, 0xff)
	}
	k := g.known
	kg, ok := k.byKey[string(g.buf)] // no allocation: the compiler elides the conversion
	if !ok {
		labels := make(map[string]string, len(g.by))
		for _, l := range g.by {
			labels[l] = string(m[model.LabelName(l)])
		}
		kg = &knownGroup{key: string(g.buf), labels: labels}
		k.byKey[kg.key] = kg
		k.changed = true
	}
	if kg.seen != k.fetch { // the group's first series in this fetch
		if kg.seen != k.fetch-1 {
			k.changed = true
		}
		kg.seen = k.fetch
		k.seen = append(k.seen, kg)
	}
	return kg
}

// cursors maps each series of m onto its group (and onto sub(metric) for a breakdown), ready to
// be walked step by step.
func (g *grouper) cursors(m model.Matrix, sub func(model.Metric) string) []seriesCursor {
	out := make([]seriesCursor, 0, len(m))
	for _, ss := range m {
		c := seriesCursor{group: g.group(ss.Metric), values: ss.Values}
		if sub != nil {
			c.id = sub(ss.Metric)
		}
		out = append(out, c)
	}
	return out
}
