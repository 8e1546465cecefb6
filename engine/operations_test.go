package engine

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/emergent-sh/emergent/alerts"
	"github.com/emergent-sh/emergent/detector"
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
