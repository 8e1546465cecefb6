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
	cur, prev map[string]model.Metric
}

// newLabelSets returns an empty cache of at most 2 × max label sets.
func newLabelSets(max int) *labelSets {
	return &labelSets{max: max, cur: map[string]model.Metric{}}
}

// metric returns the label set whose JSON object is raw, decoding it on a miss. raw is not
// kept (it is copied on a miss), so the caller may reuse its buffer.
func (c *labelSets) metric(raw []byte) (model.Metric, error) {
	c.mu.Lock()
	m, ok := c.cur[string(raw)] // no allocation: the compiler elides the conversion
	if !ok {
		if m, ok = c.prev[string(raw)]; ok {
			c.insert(string(raw), m)
		}
	}
	c.mu.Unlock()
	if ok {
		return m, nil
	}
	m, err := decodeMetric(raw)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.insert(string(raw), m)
	c.mu.Unlock()
	return m, nil
}

// insert adds a label set to the current generation, starting a new one when it is full.
// c.mu is held.
func (c *labelSets) insert(key string, m model.Metric) {
	if len(c.cur) >= c.max {
		c.prev, c.cur = c.cur, make(map[string]model.Metric, len(c.cur))
	}
	c.cur[key] = m
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
