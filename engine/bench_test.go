package engine

import (
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"testing"
	"time"

	"github.com/emergent-sh/emergent/sources"
	"github.com/prometheus/common/model"
)

// staticSource answers every query with a prebuilt matrix of n groups holding one sample at
// the requested range's start, as Prometheus answers one incremental step.
type staticSource struct{ byQuery map[string]model.Matrix }

func newStaticSource(n int) *staticSource {
	s := &staticSource{byQuery: map[string]model.Matrix{}}
	for q, v := range map[string]model.SampleValue{inboundQ: 3, mintsQ: 0.001} { // a healthy fleet
		m := make(model.Matrix, n)
		for g := range n {
			m[g] = &model.SampleStream{
				Metric: model.Metric{"service": model.LabelValue(fmt.Sprintf("svc-%d", g))},
				Values: []model.SamplePair{{Value: v}},
			}
		}
		s.byQuery[q] = m
	}
	return s
}

func (s *staticSource) QueryRange(_ context.Context, q string, r sources.Range) (model.Matrix, sources.Warnings, error) {
	m := s.byQuery[q]
	ts := model.TimeFromUnixNano(r.Start.UnixNano())
	for _, ss := range m {
		ss.Values[0].Timestamp = ts
	}
	return m, nil, nil
}

// BenchmarkAdvanceStep measures one incremental evaluation step of one rule: grouping the
// answers of its queries and evaluating every group.
func BenchmarkAdvanceStep(b *testing.B) {
	for _, n := range []int{1, 10000} {
		b.Run(fmt.Sprintf("groups=%d", n), func(b *testing.B) {
			cfg := testConfig()
			cfg.Global.History = model.Duration(time.Hour)
			e := New(cfg, newStaticSource(n), slog.New(slog.DiscardHandler), nil)
			if _, err := e.Bootstrap(context.Background(), now); err != nil {
				b.Fatal(err)
			}
			step := time.Duration(cfg.Global.EvaluationInterval)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				e.last = now.Add(-step) // evaluate the same step again: same hour, no relearning
				if _, err := e.Advance(context.Background(), now); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// fullSource answers every query with a sample at every step of the range for n groups, each
// answer built once per (query, range) and reused, so a benchmark measures the engine.
type fullSource struct {
	n     int
	cache map[string]model.Matrix
}

func (s *fullSource) QueryRange(_ context.Context, q string, r sources.Range) (model.Matrix, sources.Warnings, error) {
	id := q + r.Start.String() + r.End.String() + r.Step.String()
	if m, ok := s.cache[id]; ok {
		return m, nil, nil
	}
	v := model.SampleValue(3)
	if q == mintsQ {
		v = 0.001
	}
	m := make(model.Matrix, s.n)
	for g := range s.n {
		ss := &model.SampleStream{Metric: model.Metric{"service": model.LabelValue(fmt.Sprintf("svc-%d", g))}}
		for t := r.Start; !t.After(r.End); t = t.Add(r.Step) {
			ss.Values = append(ss.Values, model.SamplePair{Timestamp: model.TimeFromUnixNano(t.UnixNano()), Value: v})
		}
		m[g] = ss
	}
	s.cache[id] = m
	return m, nil, nil
}

// BenchmarkBootstrap measures the start-up of one rule over 1000 groups: a week of history at
// the 5-minute baseline step, then 6 hours replayed at 30 s. B/op is everything the engine
// and detector allocate on the way (the source's answers are built before the timer);
// retained-B/group is what stays live afterwards, the detector's state.
func BenchmarkBootstrap(b *testing.B) {
	const groups = 1000
	cfg := testConfig()
	cfg.Global.History = model.Duration(7 * 24 * time.Hour)
	cfg.Global.Replay = model.Duration(6 * time.Hour)
	src := &fullSource{n: groups, cache: map[string]model.Matrix{}}
	if _, err := New(cfg, src, slog.New(slog.DiscardHandler), nil).Bootstrap(context.Background(), now); err != nil {
		b.Fatal(err) // warms the source's cache
	}
	var e *Engine
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		e = New(cfg, src, slog.New(slog.DiscardHandler), nil)
		if _, err := e.Bootstrap(context.Background(), now); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	src.cache = nil
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	b.ReportMetric(float64(ms.HeapAlloc)/groups, "retained-B/group")
	runtime.KeepAlive(e)
}
