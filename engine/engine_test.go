package engine

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emergent-sh/emergent/config"
	"github.com/emergent-sh/emergent/sources"
	"github.com/prometheus/common/model"
)

// fakeSource answers every query from functions of time, one series per group; it can fail or
// warn per query, and counts calls.
type fakeSource struct {
	mu       sync.Mutex
	series   map[string]map[string]func(time.Time) float64 // query -> service -> value (NaN: absent)
	fail     map[string]bool
	warn     map[string]string
	answers  map[string]model.Matrix // queries answered as they are, whatever the range
	calls    int
	maxSteps int
	asked    []asked // every query, in order
}

type asked struct {
	query string
	r     sources.Range
}

func (f *fakeSource) QueryRange(_ context.Context, q string, r sources.Range) (model.Matrix, sources.Warnings, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	f.maxSteps = max(f.maxSteps, int(r.End.Sub(r.Start)/r.Step)+1)
	f.asked = append(f.asked, asked{q, r})
	if f.fail[q] {
		return nil, nil, errors.New("boom")
	}
	if m, ok := f.answers[q]; ok {
		return m, nil, nil
	}
	var m model.Matrix
	for svc, fn := range f.series[q] {
		ss := &model.SampleStream{Metric: model.Metric{"service": model.LabelValue(svc)}}
		for t := r.Start; !t.After(r.End); t = t.Add(r.Step) {
			if v := fn(t); !math.IsNaN(v) {
				ss.Values = append(ss.Values, model.SamplePair{Timestamp: model.TimeFromUnixNano(t.UnixNano()), Value: model.SampleValue(v)})
			}
		}
		m = append(m, ss)
	}
	var w sources.Warnings
	if f.warn[q] != "" {
		w = sources.Warnings{f.warn[q]}
	}
	return m, w, nil
}

const (
	inboundQ = `sum by (service) (rate(http_requests_total[2m]))`
	mintsQ   = `sum by (service) (rate(token_mint_count[2m]))`
)

func testConfig() *config.Config {
	return &config.Config{
		Global: config.Global{
			EvaluationInterval: model.Duration(30 * time.Second), BaselineStep: model.Duration(5 * time.Minute),
			History: model.Duration(24 * time.Hour), Replay: model.Duration(time.Hour),
			ResolvedRetention: model.Duration(15 * time.Minute), BlindAfter: model.Duration(5 * time.Minute),
		},
		Prometheus: config.Prometheus{URL: "http://prometheus.example:9090"},
		Rules: []config.Rule{{
			Name: "token-minting", Kind: config.KindSelfGenerated, Severity: "warning", GroupBy: []string{"service"},
			Inbound: inboundQ, For: model.Duration(2 * time.Minute), ResolveFor: model.Duration(2 * time.Minute),
			Hysteresis: 0.8, MinUnexplainedShare: 0.5, MinUnexplainedRate: 0.01, InstanceLabel: "instance",
			Signals: []config.Signal{{Name: "mints", Unit: "token mints", Query: mintsQ, Relation: config.RelationBounded, Ceiling: 0.05}},
		}},
	}
}

var now = time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC)

func constant(v float64) func(time.Time) float64 { return func(time.Time) float64 { return v } }

// after returns v from t0 on, before otherwise.
func after(t0 time.Time, before, v float64) func(time.Time) float64 {
	return func(t time.Time) float64 {
		if t.Before(t0) {
			return before
		}
		return v
	}
}

func newFake(mints func(time.Time) float64) *fakeSource {
	return &fakeSource{series: map[string]map[string]func(time.Time) float64{
		inboundQ: {"checkout": constant(3)},
		mintsQ:   {"checkout": mints},
	}, fail: map[string]bool{}, warn: map[string]string{}}
}

func TestBootstrapRecoversEpisodeStart(t *testing.T) {
	onset := now.Add(-20 * time.Minute)
	src := newFake(after(onset, 0.001, 2.5))
	e := New(testConfig(), src, slog.New(slog.DiscardHandler), nil)
	events, err := e.Bootstrap(context.Background(), now)
	if err != nil {
		t.Fatal(err)
	}
	if len(events) != 1 || events[0].Resolved {
		t.Fatalf("want one fired event from the replay, got %+v", events)
	}
	if want := onset.Add(2 * time.Minute); !events[0].Episode.Start.Equal(want) {
		t.Errorf("start %s, want onset + for = %s", events[0].Episode.Start, want)
	}
	// Another instance started 7 minutes later agrees on the start.
	e2 := New(testConfig(), newFake(after(onset, 0.001, 2.5)), slog.New(slog.DiscardHandler), nil)
	if _, err := e2.Bootstrap(context.Background(), now.Add(7*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if got := e2.Active(); len(got) != 1 || !got[0].Start.Equal(events[0].Episode.Start) {
		t.Errorf("second instance: %+v", got)
	}
	// Range queries stay within Prometheus's per-query point limit.
	if src.maxSteps > maxStepsPerQuery {
		t.Errorf("a query asked for %d steps", src.maxSteps)
	}
}

func TestMissingDataNeitherFiresNorResolves(t *testing.T) {
	tests := []struct {
		name      string
		breakData func(f *fakeSource)
	}{
		{"query error", func(f *fakeSource) { f.fail[mintsQ] = true }},
		{"partial response", func(f *fakeSource) { f.warn[inboundQ] = "partial response: store eu-2 unreachable" }},
		{"series vanished", func(f *fakeSource) { f.series[mintsQ]["checkout"] = constant(math.NaN()) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src := newFake(after(now.Add(-30*time.Minute), 0.001, 2.5))
			e := New(testConfig(), src, slog.New(slog.DiscardHandler), nil)
			if _, err := e.Bootstrap(context.Background(), now); err != nil {
				t.Fatal(err)
			}
			if len(e.Active()) != 1 {
				t.Fatal("precondition: one active episode")
			}
			tc.breakData(src)
			events, err := e.Advance(context.Background(), now.Add(10*time.Minute))
			if err != nil {
				t.Fatal(err)
			}
			if len(events) != 0 || len(e.Active()) != 1 {
				t.Errorf("missing data changed the episode: events %+v, active %d", events, len(e.Active()))
			}
			blind := false
			for _, a := range e.Alerts() {
				if a.Labels["alertname"] == "EmergentDetectorBlind" {
					blind = true
				}
			}
			if !blind {
				t.Error("10 minutes blind (blind_after 5m) raised no meta-alert")
			}
		})
	}
}

func TestPromQLInfoIsNotPartial(t *testing.T) {
	src := newFake(after(now.Add(-30*time.Minute), 0.001, 2.5))
	src.warn[mintsQ] = `PromQL info: metric might not be a counter, name does not end in _total/_sum/_count/_bucket: "token_mint_count"`
	e := New(testConfig(), src, slog.New(slog.DiscardHandler), nil)
	if _, err := e.Bootstrap(context.Background(), now); err != nil {
		t.Fatal(err)
	}
	if len(e.Active()) != 1 {
		t.Error("an info annotation made the data unknown")
	}
}

func TestAlerts(t *testing.T) {
	src := newFake(after(now.Add(-30*time.Minute), 0.001, 2.5))
	e := New(testConfig(), src, slog.New(slog.DiscardHandler), nil)
	if _, err := e.Bootstrap(context.Background(), now); err != nil {
		t.Fatal(err)
	}
	as := e.Alerts()
	if len(as) != 1 {
		t.Fatalf("want 1 alert, got %d", len(as))
	}
	a := as[0]
	want := map[string]string{"alertname": "SelfGeneratedTraffic", "kind": "self_generated_traffic", "rule": "token-minting", "severity": "warning", "service": "checkout"}
	for k, v := range want {
		if a.Labels[k] != v {
			t.Errorf("label %s = %q, want %q", k, a.Labels[k], v)
		}
	}
	if !strings.HasPrefix(a.GeneratorURL, "http://prometheus.example:9090/graph?") ||
		!strings.Contains(a.GeneratorURL, "token_mint_count%7Bservice%3D%22checkout%22%7D") {
		t.Errorf("generatorURL does not graph the group's signal: %s", a.GeneratorURL)
	}
	// Expected is the level learned from the group's history (0.001/s), under the ceiling.
	if a.Details.ObservedPerSec != 2.5 || math.Abs(a.Details.ExpectedPerSec-0.001) > 1e-6 {
		t.Errorf("details = %+v", a.Details)
	}

	// Fixed: the episode resolves after resolve_for and is kept for resolved_retention.
	src.series[mintsQ]["checkout"] = constant(0.001)
	events, err := e.Advance(context.Background(), now.Add(5*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if len(events) != 1 || !events[0].Resolved {
		t.Fatalf("want a resolve, got %+v", events)
	}
	if as := e.Alerts(); len(as) != 1 || !as[0].Resolved() {
		t.Errorf("resolved alert not kept for re-sending: %+v", as)
	}
	if _, err := e.Advance(context.Background(), now.Add(30*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if as := e.Alerts(); len(as) != 0 {
		t.Errorf("resolved alert kept past retention: %+v", as)
	}
}

func TestOneQueryPerSignalPerAdvance(t *testing.T) {
	src := newFake(constant(0.001))
	e := New(testConfig(), src, slog.New(slog.DiscardHandler), nil)
	if _, err := e.Bootstrap(context.Background(), now); err != nil {
		t.Fatal(err)
	}
	before := src.calls
	if _, err := e.Advance(context.Background(), now.Add(30*time.Second)); err != nil {
		t.Fatal(err)
	}
	if got := src.calls - before; got != 2 {
		t.Errorf("one step issued %d queries, want 2 (inbound, mints)", got)
	}
	if _, err := e.Advance(context.Background(), now.Add(30*time.Second)); err != nil {
		t.Fatal(err)
	}
	if got := src.calls - before; got != 2 {
		t.Errorf("re-advancing to the same step queried again (%d)", got)
	}
}
