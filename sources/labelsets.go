package sources

import (
	"sync"

	jsoniter "github.com/json-iterator/go"
	"github.com/prometheus/common/model"
)

// maxLabelSets bounds each of labelSets' two generations. A fleet's label sets are the same
// from one evaluation to the next, so what matters is that one cycle's distinct label sets fit
// in a generation (else some are dropped and decoded again every cycle). The shipped rules
// answer about 3 per group: measured against promsynth at 10 000 groups, 30 100 (one per
// service, shared by every `sum by (service)` query, one per instance of the per-instance
// queries, one per flush series). At 100 000 groups, the scale target, that is about 301 000,
// and 1 << 19 holds it with 1.7× to spare. A label set costs about 480 B held (the raw JSON
// key, the map and its strings, the cache's slot: 13.8 MiB more heap at 10 000 groups), so a
// steady fleet of 100 000 groups holds about 140 MiB; only label churn fills both generations,
// about 480 MiB at most.
const maxLabelSets = 1 << 19

// labelSets keeps the model.Metric of every label set a source has decoded recently, keyed by
// the series' raw `"metric":{...}` JSON, so a label set answered again (every cycle, by every
// query grouped the same way) costs a map lookup instead of a map and its strings. The
// metrics it hands out are shared by every answer that carried the label set: callers must
// not modify them.
//
// It is bounded by two generations rather than an LRU list: a hit in the previous generation
// moves the label set to the current one, and when the current one holds maxLabelSets the
// previous is dropped whole. A label set not seen for a whole generation is gone, however
// much the labels churn, and a steady fleet pays one map insert per label set per
// generation, not per series.
type labelSets struct {
	max int

	mu        sync.Mutex // answers are decoded concurrently, up to max_concurrent_queries
	cur, prev map[string]labelSet
	// last holds the label sets of each query's latest answer, in the answer's order. An answer
	// lists the same series in the same order every time (Prometheus sorts them by their
	// labels), so a series is first compared with the one at its position in the answer before
	// (labelsOf.metric): a comparison of its raw JSON instead of a lookup by it among every
	// label set held, a quarter of decoding an incremental step.
	last map[string][]labelSet
}

// labelSet is a label set and its raw JSON, the key it is held under.
type labelSet struct {
	raw string
	m   model.Metric
}

// maxLastAnswers bounds the queries whose latest label sets are kept (labelSets.last): the
// shipped rules ask 10; past 256, which only reloads that change the queries reach, they start
// over.
const maxLastAnswers = 256

// newLabelSets returns an empty cache of at most 2 × max label sets.
func newLabelSets(max int) *labelSets {
	return &labelSets{max: max, cur: map[string]labelSet{}, last: map[string][]labelSet{}}
}

// metric returns the label set whose JSON object is raw, decoding it on a miss. raw is not
// kept (it is copied on a miss), so the caller may reuse its buffer.
func (c *labelSets) metric(raw []byte) (model.Metric, error) {
	ls, err := c.lookup(raw)
	return ls.m, err
}

// lookup is metric, with the raw JSON it holds the label set under.
func (c *labelSets) lookup(raw []byte) (labelSet, error) {
	c.mu.Lock()
	ls, ok := c.cur[string(raw)] // no allocation: the compiler elides the conversion
	if !ok {
		if ls, ok = c.prev[string(raw)]; ok {
			c.insert(ls)
		}
	}
	c.mu.Unlock()
	if ok {
		return ls, nil
	}
	m, err := decodeMetric(raw)
	if err != nil {
		return labelSet{}, err
	}
	ls = labelSet{raw: string(raw), m: m}
	c.mu.Lock()
	c.insert(ls)
	c.mu.Unlock()
	return ls, nil
}

// insert adds a label set to the current generation, starting a new one when it is full.
// c.mu is held.
func (c *labelSets) insert(ls labelSet) {
	if len(c.cur) >= c.max {
		c.prev, c.cur = c.cur, make(map[string]labelSet, len(c.cur))
	}
	c.cur[ls.raw] = ls
}

// labelsOf are the label sets of one answer to a query, as it is decoded.
type labelsOf struct {
	sets  *labelSets
	query string
	prev  []labelSet // the query's answer before, in order
	// n counts the answer's series so far. While they are prev's first n, next stays nil: a
	// steady answer allocates no list of its own.
	n    int
	next []labelSet
}

// answer starts decoding an answer to query.
func (c *labelSets) answer(query string) *labelsOf {
	c.mu.Lock()
	prev := c.last[query]
	c.mu.Unlock()
	return &labelsOf{sets: c, query: query, prev: prev}
}

// series is how many series the query's answer before had.
func (a *labelsOf) series() int { return len(a.prev) }

// metric returns the label set of the answer's next series, whose JSON object is raw. raw is
// not kept.
func (a *labelsOf) metric(raw []byte) (model.Metric, error) {
	i := a.n
	if i < len(a.prev) && a.prev[i].raw == string(raw) {
		a.n++
		if a.next != nil {
			a.next = append(a.next, a.prev[i])
		}
		return a.prev[i].m, nil
	}
	ls, err := a.sets.lookup(raw)
	if err != nil {
		return nil, err
	}
	if a.next == nil { // the first series that differs from the answer before
		a.next = append(make([]labelSet, 0, max(len(a.prev), i+1)), a.prev[:i]...)
	}
	a.n++
	a.next = append(a.next, ls)
	return ls.m, nil
}

// done keeps the answer's label sets for the query's next answer; an answer that failed to
// decode is not done.
func (a *labelsOf) done() {
	next := a.next
	if next == nil {
		next = a.prev[:a.n] // prev's first n: the whole of it, or fewer series
	}
	c := a.sets
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.last[a.query]; !ok && len(c.last) >= maxLastAnswers {
		clear(c.last)
	}
	c.last[a.query] = next
}

// len is the number of label sets held, for tests.
func (c *labelSets) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.cur) + len(c.prev)
}

// decodeMetric decodes a series' "metric" object.
func decodeMetric(raw []byte) (model.Metric, error) {
	it := jsoniter.ConfigDefault.BorrowIterator(raw)
	defer jsoniter.ConfigDefault.ReturnIterator(it)
	m := model.Metric{}
	for name := it.ReadObject(); name != "" && it.Error == nil; name = it.ReadObject() {
		m[model.LabelName(name)] = model.LabelValue(it.ReadString())
	}
	if it.Error != nil {
		return nil, it.Error
	}
	return m, nil
}
