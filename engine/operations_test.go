package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/emergent-sh/emergent/alerts"
	"github.com/emergent-sh/emergent/detector"
	"github.com/emergent-sh/emergent/sources"
	"github.com/prometheus/common/model"
)

// TestFailedHistoryIsRetriedNotKept: a bootstrap whose queries fail keeps nothing and says why;
// the next attempt, with Prometheus answering, comes out as if it had answered all along.
func TestFailedHistoryIsRetriedNotKept(t *testing.T) {
	onset := now.Add(-20 * time.Minute)
	src := newFake(after(onset, 0.001, 2.5))
	src.fail[inboundQ] = true
	e := New(testConfig(), src, slog.New(slog.DiscardHandler), nil)
	if _, err := e.Bootstrap(context.Background(), now); err == nil || !strings.Contains(err.Error(), "boom") {
		t.Fatalf("bootstrap with a failing query: err %v, want the query's error", err)
	}
	if e.Bootstrapped() || e.HistoryError() == nil || len(e.Active()) != 0 {
		t.Fatalf("after a failed bootstrap: bootstrapped %v, history error %v, %d active", e.Bootstrapped(), e.HistoryError(), len(e.Active()))
	}
	src.fail[inboundQ] = false
	events, err := e.Bootstrap(context.Background(), now)
	if err != nil {
		t.Fatal(err)
	}
	if len(events) != 1 || !events[0].Episode.Start.Equal(onset.Add(2*time.Minute)) || e.HistoryError() != nil {
		t.Errorf("retried bootstrap: events %+v, history error %v; want one episode from onset + for", events, e.HistoryError())
	}
}

// TestCarriedStartSurvivesAReplayThatCannotSeeIt: the episode began before the replay window;
// the start handed over (a reload, or read back from Prometheus) is kept, on the fired alert too.
func TestCarriedStartSurvivesAReplayThatCannotSeeIt(t *testing.T) {
	onset := now.Add(-70 * time.Minute) // the replay covers the last hour
	src := newFake(after(onset, 0.001, 2.5))
	first := New(testConfig(), src, slog.New(slog.DiscardHandler), nil)
	if _, err := first.Bootstrap(context.Background(), now); err != nil {
		t.Fatal(err)
	}
	original := first.Active()[0]
	original.Start = onset.Add(2 * time.Minute) // what a process up since the onset saw

	next := New(testConfig(), src, slog.New(slog.DiscardHandler), nil)
	next.Carry([]detector.Episode{original})
	if _, err := next.Bootstrap(context.Background(), now.Add(10*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if got := next.Active(); len(got) != 1 || !got[0].Start.Equal(original.Start) {
		t.Fatalf("active %+v, want the carried start %v", got, original.Start)
	}
	for _, a := range next.Alerts() {
		if a.Labels["service"] == "checkout" && !a.StartsAt.Equal(original.Start) {
			t.Errorf("alert startsAt %v, want %v", a.StartsAt, original.Start)
		}
	}
}

// TestRuleOverItsLimitIsBlindWithTheReason: a query that returns more groups than the rule's
// limit makes the rule see unknown data (nothing fires), and the one blind alert says why.
func TestRuleOverItsLimitIsBlindWithTheReason(t *testing.T) {
	cfg := testConfig()
	cfg.Rules[0].Limit = 1
	src := newFake(constant(2.5))
	src.series[inboundQ]["search"] = constant(3)
	src.series[mintsQ]["search"] = constant(2.5)
	e := New(cfg, src, slog.New(slog.DiscardHandler), nil)
	if _, err := e.Bootstrap(context.Background(), now); err != nil {
		t.Fatal(err)
	}
	if len(e.Active()) != 0 {
		t.Errorf("a rule over its limit fired %d episodes", len(e.Active()))
	}
	var blind []*alerts.Alert
	for _, a := range e.Alerts() {
		if a.Labels["alertname"] == "EmergentDetectorBlind" && a.EndsAt.IsZero() {
			blind = append(blind, a)
		}
	}
	if len(blind) != 1 || !strings.Contains(blind[0].Annotations["summary"], "over its limit of 1") {
		t.Fatalf("blind alerts %+v, want one naming the limit", blind)
	}
}

// slowSource times out any query whose answer would hold more than limit samples, as a
// Prometheus slower than the start-up's budget assumed.
type slowSource struct {
	*fakeSource
	limit int
}

func (s slowSource) QueryRange(ctx context.Context, q string, r sources.Range) (model.Matrix, sources.Warnings, error) {
	m, w, err := s.fakeSource.QueryRange(ctx, q, r)
	if err == nil && len(m)*int(r.End.Sub(r.Start)/r.Step+1) > s.limit {
		return nil, nil, fmt.Errorf("query %q: timed out after 10s: %w", q, context.DeadlineExceeded)
	}
	return m, w, err
}

// TestStartUpAsksLessAfterATimeout: a start-up whose queries time out is retried with half the
// samples per query each time, until they fit, instead of failing the same way for good.
func TestStartUpAsksLessAfterATimeout(t *testing.T) {
	fake := newFake(constant(0.001))
	for i := range 99 { // 100 groups
		svc := fmt.Sprintf("svc-%02d", i)
		fake.series[inboundQ][svc] = constant(3)
		fake.series[mintsQ][svc] = constant(0.001)
	}
	src := slowSource{fakeSource: fake, limit: 2000} // 20 steps of 100 groups
	e := New(testConfig(), src, slog.New(slog.DiscardHandler), nil)
	attempts := 0
	for ; attempts < 20; attempts++ {
		if _, err := e.Bootstrap(context.Background(), now); err == nil {
			break
		} else if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatal(err)
		}
	}
	if !e.Bootstrapped() {
		t.Fatalf("not loaded after %d attempts", attempts)
	}
	if attempts == 0 {
		t.Fatal("the first attempt fitted: the test no longer makes queries time out")
	}
	t.Logf("loaded at attempt %d with %d samples per query", attempts+1, e.budget)
}
