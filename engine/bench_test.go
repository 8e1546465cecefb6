package engine

import (
	"context"
	"fmt"
	"log/slog"
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
