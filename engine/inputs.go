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

// ruleBatch holds one rule's series cursors and the maps its inputs are built in, which are
// reused from step to step: the detector copies what it keeps.
type ruleBatch struct {
	cfg                               config.Rule
	failed                            bool
	err                               error    // the first of the rule's queries that failed
	overLimit                         error    // the rule's queries return more groups than its limit
	empty                             []string // the rule's required queries that returned no series
	labels                            map[string]map[string]string
	inbound, keys, commands, writes   []seriesCursor
	signals                           [][]seriesCursor
	instances, replicas, flushes      []seriesCursor
	cacheResets                       []seriesCursor
	inboundV, keysV, commandsV, writV detector.Values
	cacheResetsV                      detector.Values
	signalsV                          []detector.Values
	instancesV, replicasV, flushesV   breakdownValues
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
	if rb.signalsV == nil {
		rb.signalsV = make([]detector.Values, len(rb.signals))
		for i := range rb.signalsV {
			rb.signalsV[i] = detector.Values{}
		}
		rb.inboundV, rb.keysV, rb.commandsV, rb.writV = detector.Values{}, detector.Values{}, detector.Values{}, detector.Values{}
		rb.cacheResetsV = detector.Values{}
	}
	in := detector.Input{
		Time: t, Failed: rb.failed, Groups: rb.labels,
		Inbound: sumAt(rb.inbound, ts, rb.inboundV), Keys: sumAt(rb.keys, ts, rb.keysV),
		Commands: sumAt(rb.commands, ts, rb.commandsV), Writes: sumAt(rb.writes, ts, rb.writV),
		Instances: rb.instancesV.at(rb.instances, ts), Flushes: rb.flushesV.at(rb.flushes, ts),
		Replicas: rb.replicasV.at(rb.replicas, ts), CacheResets: sumAt(rb.cacheResets, ts, rb.cacheResetsV),
		Signals: make([]detector.Values, len(rb.signals)),
	}
	for i, cur := range rb.signals {
		in.Signals[i] = sumAt(cur, ts, rb.signalsV[i])
	}
	return in
}

// seriesCursor walks one series' samples in time order.
type seriesCursor struct {
	key, id string // group key; sub-key of a breakdown
	values  []model.SamplePair
	next    int
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

// sumAt fills out with each group's sum at ts. A query that answers one series per group (the
// intended `sum by (...)`) passes through; several series of one group add up.
func sumAt(cursors []seriesCursor, ts model.Time, out detector.Values) detector.Values {
	clear(out)
	for i := range cursors {
		if v, ok := cursors[i].at(ts); ok {
			out[cursors[i].key] += v
		}
	}
	return out
}

// breakdownValues builds a breakdown input (each group's series kept apart by sub-key),
// reusing each group's inner map from step to step.
type breakdownValues struct {
	out   map[string]detector.Values
	inner map[string]detector.Values
}

func (b *breakdownValues) at(cursors []seriesCursor, ts model.Time) map[string]detector.Values {
	if cursors == nil {
		return nil
	}
	if b.out == nil {
		b.out, b.inner = map[string]detector.Values{}, map[string]detector.Values{}
	}
	clear(b.out)
	for i := range cursors {
		c := &cursors[i]
		v, ok := c.at(ts)
		if !ok {
			continue
		}
		m, seen := b.out[c.key]
		if !seen { // first series of this group at this step: start its map afresh
			if m = b.inner[c.key]; m == nil {
				m = detector.Values{}
				b.inner[c.key] = m
			}
			clear(m)
			b.out[c.key] = m
		}
		m[c.id] += v
	}
	return b.out
}

// grouper maps series onto a rule's groups.
type grouper struct {
	by     []string
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

// cursors maps each series of m onto its group (and onto sub(metric) for a breakdown), ready to
// be walked step by step.
func (g *grouper) cursors(m model.Matrix, sub func(model.Metric) string) []seriesCursor {
	out := make([]seriesCursor, 0, len(m))
	for _, ss := range m {
		c := seriesCursor{key: g.key(ss.Metric), values: ss.Values}
		if sub != nil {
			c.id = sub(ss.Metric)
		}
		out = append(out, c)
	}
	return out
}
