package engine

import (
	"cmp"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"time"
	"unsafe"

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
	// queries and answers are the fetch's, for recycle.
	queries []string
	answers []model.Matrix
}

// ruleBatch holds one rule's answers of one fetch, each in the role the rule reads it in.
type ruleBatch struct {
	cfg       config.Rule
	failed    bool
	err       error    // the first of the rule's queries that failed
	overLimit error    // the rule's queries return more groups than its limit
	empty     []string // the rule's required queries that returned no series
	// seen holds the input of each group the fetch saw (Input.Seen), refilled at each step.
	seen []*detector.GroupInput
	// sums are the answers whose series add up in a reading of their group's input (inbound,
	// keys, commands, writes, cache resets, the signals); breakdowns those whose series are
	// kept apart (instances, replicas, flushes).
	sums, breakdowns []answer
}

// answer is one query's answer as a rule reads it. Each series is read at each step straight
// from the answer: a cursor per series, made at every fetch, was 72 B per series, 65 MB per
// cycle at 100 000 groups (and kept from fetch to fetch, about 800 B more heap per group).
type answer struct {
	m      model.Matrix
	placed []placed // each series' group, in m's order (grouper.place)
	// reading is where a sum's series adds up (one of its group's input readings); part is the
	// breakdown a breakdown's series goes to, under id.
	reading func(*detector.GroupInput) *detector.Reading
	part    int
	id      func(*knownGroup, model.Metric) string
}

// recycle hands the batch's answers back to a source that reuses their memory
// (sources.Recycler) once the batch is evaluated: the next fetch's answers to the same queries
// are decoded into them, so a steady cycle allocates next to nothing for its answers. Nothing
// the engine keeps refers to an answer's series or samples, only to their label sets (which
// are not recycled). The batch must not be used afterwards.
func (e *Engine) recycle(b *batch) {
	rc, ok := e.src.(sources.Recycler)
	if !ok {
		return
	}
	for i, m := range b.answers {
		if m != nil {
			rc.Recycle(b.queries[i], m)
		}
	}
	b.answers, b.rules = nil, nil
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
// are valid only during the call.
func (b *batch) each(fn func(t time.Time, inputs []detector.Input)) {
	inputs := make([]detector.Input, len(b.rules))
	for s := range b.n {
		t := b.r.Start.Add(time.Duration(s) * b.r.Step)
		ts := model.TimeFromUnixNano(t.UnixNano())
		for ri, rb := range b.rules {
			inputs[ri] = rb.input(t, ts, s)
		}
		fn(t, inputs)
	}
}

// input fills the input of each group the fetch saw with its values at ts, the batch's step s.
func (rb *ruleBatch) input(t time.Time, ts model.Time, s int) detector.Input {
	for _, in := range rb.seen {
		clearInput(in)
	}
	for i := range rb.sums {
		rb.sums[i].sumAt(ts, s)
	}
	for i := range rb.breakdowns {
		rb.breakdowns[i].breakdownAt(ts, s)
	}
	return detector.Input{Time: t, Failed: rb.failed, Seen: rb.seen}
}

// clearInput empties a group's input for the next step; a breakdown's map is kept in its
// knownGroup for reuse.
func clearInput(in *detector.GroupInput) {
	in.Inbound, in.Keys, in.Commands, in.Writes, in.CacheResets, in.ReplicaCount = detector.Reading{}, detector.Reading{}, detector.Reading{}, detector.Reading{}, detector.Reading{}, detector.Reading{}
	clear(in.Signals)
	in.Instances, in.Replicas, in.Flushes = detector.Breakdown{}, detector.Breakdown{}, detector.Breakdown{}
}

// valueAt returns a series' value at ts, the batch's step s; false when it has none. A series
// with a sample at every step has the step's at s; one with gaps is searched.
func valueAt(values []model.SamplePair, ts model.Time, s int) (float64, bool) {
	if s < len(values) && values[s].Timestamp == ts {
		return float64(values[s].Value), true
	}
	i, found := slices.BinarySearchFunc(values, ts, func(p model.SamplePair, ts model.Time) int { return cmp.Compare(p.Timestamp, ts) })
	if !found {
		return 0, false
	}
	return float64(values[i].Value), true
}

// sumAt adds each series' value at ts, the batch's step s, to its group's reading. A query
// that answers one series per group (the intended `sum by (...)`) passes through; several
// series of one group add up, in the answer's order.
func (a *answer) sumAt(ts model.Time, s int) {
	for i, p := range a.placed {
		if v, ok := valueAt(a.m[i].Values, ts, s); ok {
			rd := a.reading(&p.group.in)
			rd.Value += v
			rd.OK = true
		}
	}
}

// A group's breakdowns, one per breakdown query (knownGroup.parts).
const (
	partInstances = iota
	partReplicas
	partFlushes
	breakdowns
)

// breakdownAt sets each group's breakdown at ts, the batch's step s (each series kept apart
// by its id), in the group's own map for it (knownGroup.parts), reused from step to step.
func (a *answer) breakdownAt(ts model.Time, s int) {
	for i, p := range a.placed {
		v, ok := valueAt(a.m[i].Values, ts, s)
		if !ok {
			continue
		}
		kg := p.group
		b := kg.breakdown(a.part)
		if !b.OK { // first series of this group at this step: start its map afresh
			m := kg.parts[a.part]
			if m == nil {
				m = detector.Values{}
				kg.parts[a.part] = m
			}
			clear(m)
			b.Series, b.OK = m, true
		}
		b.Series[a.id(kg, a.m[i].Metric)] += v
	}
}

// grouper maps series onto a rule's groups.
type grouper struct {
	by      []string
	signals int // the rule's work signals: each group's input has a reading per signal
	known   *knownGroups
	// alike are the known groups of the other rules that group by the same labels: a group new
	// to this rule takes its key and labels from theirs, so the rules of a group keep one copy
	// (a labels map and a key string are about 400 B per group and rule).
	alike []*knownGroups
	buf   []byte
}

// knownGroup is a group a rule has seen, kept across fetches so a steady fleet allocates
// nothing for it per step or fetch.
type knownGroup struct {
	in   detector.GroupInput // its input at the step under way; Key and Labels are the group's
	seen uint64              // the latest fetch (knownGroups.fetch) that saw the group
	// parts are the group's breakdown maps (instances, replicas, flushes), reused from step to
	// step.
	parts [breakdowns]detector.Values
	// seriesIDs are the ids of the group's series that need one (seriesID), kept: formatted
	// afresh at every fetch, the flush series' ids were a third of the grouping's CPU.
	seriesIDs []seriesID
}

type seriesID struct {
	metric model.Metric
	id     string
}

// maxSeriesIDs bounds a group's kept ids: past it they start over, so series churn (a pod's
// name in a label) cannot grow them without bound.
const maxSeriesIDs = 32

// seriesID is the id of one of the group's series: its label set (model.Metric.String).
func (kg *knownGroup) seriesID(m model.Metric) string {
	for _, s := range kg.seriesIDs {
		if maps.Equal(s.metric, m) {
			return s.id
		}
	}
	if len(kg.seriesIDs) >= maxSeriesIDs {
		kg.seriesIDs = kg.seriesIDs[:0]
	}
	id := m.String()
	kg.seriesIDs = append(kg.seriesIDs, seriesID{metric: m, id: id})
	return id
}

// breakdown is the group's input for breakdown part.
func (kg *knownGroup) breakdown(part int) *detector.Breakdown {
	switch part {
	case partInstances:
		return &kg.in.Instances
	case partReplicas:
		return &kg.in.Replicas
	}
	return &kg.in.Flushes
}

// knownGroups remembers every group a rule has seen, and which groups its latest fetch saw.
type knownGroups struct {
	byKey map[string]*knownGroup
	// byLabels finds a series' group by the identity of its label set: the source hands out the
	// same model.Metric for a label set it has decoded before (sources.labelSets), so a label
	// set answered again, at every fetch and by every query grouped the same way, costs a
	// lookup by pointer instead of building its key from the group_by labels and hashing it.
	// A key keeps its label set alive, so an address is never reused for another one while it
	// is here.
	byLabels map[unsafe.Pointer]*knownGroup
	// byPosition holds, per query, the label set and group of each series of its latest
	// answer, in the answer's order. An answer lists the same series in the same order every
	// time, and the source hands out the same label set for each, so a series is first
	// compared with the one at its position in the answer before: at 100 000 groups a lookup
	// in byLabels, among 300 000 label sets, missed the cache for most series.
	byPosition map[string][]placed
	// series counts the series the fetch under way grouped, to bound byLabels.
	series int
	fetch  uint64 // numbers the fetches
	// seen holds the input of each group the fetch under way saw, in the order it saw them
	// (Input.Seen).
	seen []*detector.GroupInput
}

// maxKnownGroups bounds the memory of label sets: past it the cache starts over (the cost is
// one allocation per group on the next step), so label churn cannot grow it without bound.
const maxKnownGroups = 1 << 20

// begin starts a fetch: the groups its series map onto are counted from here.
func (k *knownGroups) begin() {
	if k.byKey == nil || len(k.byKey) > maxKnownGroups {
		k.byKey = map[string]*knownGroup{}
		k.byLabels, k.byPosition = nil, map[string][]placed{} // their groups are no longer the known ones
	}
	// A source that decodes every answer afresh hands out new label sets each fetch; past two
	// fetches' worth they start over, so byLabels holds at most that many beyond the answers.
	if k.byLabels == nil || len(k.byLabels) > 2*k.series {
		k.byLabels = map[unsafe.Pointer]*knownGroup{}
	}
	k.series = 0
	k.fetch++
	if k.seen == nil {
		k.seen = []*detector.GroupInput{} // never nil: a nil Input.Seen is an input by maps
	}
	k.seen = k.seen[:0]
}

// placed is a series' label set, by its identity, and its group.
type placed struct {
	labels unsafe.Pointer
	group  *knownGroup
}

// place finds the group of each series of m, query's answer, and notes that the fetch saw
// them. The result is kept for the query's next answer, and is valid until then.
func (g *grouper) place(query string, m model.Matrix) []placed {
	k := g.known
	last := k.byPosition[query]
	for i, ss := range m {
		id := reflect.ValueOf(ss.Metric).UnsafePointer() // the map's identity
		if i < len(last) && last[i].labels == id {
			g.saw(last[i].group)
			continue
		}
		p := placed{labels: id, group: g.group(id, ss.Metric)}
		if i < len(last) {
			last[i] = p
		} else {
			last = append(last, p)
		}
	}
	last = last[:len(m)]
	k.byPosition[query] = last
	return last
}

// group finds the group of a series by its label set's identity, and notes that the fetch saw
// it. m must not be modified after it is grouped (the source's label sets are not).
func (g *grouper) group(id unsafe.Pointer, m model.Metric) *knownGroup {
	k := g.known
	kg, ok := k.byLabels[id]
	if !ok {
		kg = g.byKey(m)
		k.byLabels[id] = kg
	}
	g.saw(kg)
	return kg
}

// saw notes that the fetch saw one of kg's series.
func (g *grouper) saw(kg *knownGroup) {
	k := g.known
	k.series++
	if kg.seen != k.fetch { // the group's first series in this fetch
		kg.seen = k.fetch
		k.seen = append(k.seen, &kg.in)
	}
}

// byKey finds the group of a label set by its group_by label values (the key is opaque to the
// detector), adding it if it is new.
func (g *grouper) byKey(m model.Metric) *knownGroup {
	g.buf = g.buf[:0]
	for _, l := range g.by {
		g.buf = append(g.buf, m[model.LabelName(l)]...)
		g.buf = append(g.buf, 0xff)
	}
	k := g.known
	kg, ok := k.byKey[string(g.buf)] // no allocation: the compiler elides the conversion
	if !ok {
		key, labels := g.labels(m)
		kg = &knownGroup{in: detector.GroupInput{Key: key, Labels: labels, Signals: make([]detector.Reading, g.signals)}}
		k.byKey[kg.in.Key] = kg
	}
	return kg
}

// labels returns the key in g.buf and the group labels of m, a label set of a group new to the
// rule: another rule's copy if one that groups alike knows the group. Nothing modifies a group's
// labels once made (episodes and alerts copy them).
func (g *grouper) labels(m model.Metric) (string, map[string]string) {
	for _, other := range g.alike {
		if kg, ok := other.byKey[string(g.buf)]; ok {
			return kg.in.Key, kg.in.Labels
		}
	}
	labels := make(map[string]string, len(g.by))
	for _, l := range g.by {
		labels[l] = string(m[model.LabelName(l)])
	}
	return string(g.buf), labels
}

// sums maps each series of m onto its group, to add up in the reading of the group's input
// that reading names.
func (g *grouper) sums(query string, m model.Matrix, reading func(*detector.GroupInput) *detector.Reading) answer {
	return answer{m: m, placed: g.place(query, m), reading: reading}
}

// breakdown maps each series of m onto its group's breakdown part, under id(group, metric).
func (g *grouper) breakdown(query string, m model.Matrix, part int, id func(*knownGroup, model.Metric) string) answer {
	return answer{m: m, placed: g.place(query, m), part: part, id: id}
}
