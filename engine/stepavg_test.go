package engine

import (
	"context"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/emergent-sh/emergent/sources"
	"github.com/prometheus/common/model"
)

// averagingSource is a fakeSource that can also answer a query averaged over each step, and
// records which queries it was asked that way.
type averagingSource struct {
	*fakeSource
	averaged []asked
}

func (a *averagingSource) QueryRangeStepAveraged(ctx context.Context, q string, r sources.Range) (model.Matrix, sources.Warnings, error) {
	a.mu.Lock()
	a.averaged = append(a.averaged, asked{q, r})
	a.mu.Unlock()
	return a.fakeSource.QueryRange(ctx, q, r)
}

// TestHistoryAsksWorkAveragedOverTheStep: the start-up's history asks the work (the signals)
// averaged over each baseline step, where a source can, and inbound as it is; the replay asks
// everything as it is.
func TestHistoryAsksWorkAveragedOverTheStep(t *testing.T) {
	src := &averagingSource{fakeSource: newFake(constant(0.001))}
	cfg := testConfig()
	e := New(cfg, src, slog.New(slog.DiscardHandler), nil)
	if _, err := e.Bootstrap(context.Background(), now); err != nil {
		t.Fatal(err)
	}
	base := time.Duration(cfg.Global.BaselineStep)
	if len(src.averaged) == 0 {
		t.Fatal("nothing asked averaged")
	}
	for _, a := range src.averaged {
		if a.query != mintsQ || a.r.Step != base {
			t.Errorf("asked %q averaged at step %s, want only %q at the baseline step %s", a.query, a.r.Step, mintsQ, base)
		}
	}
	var plain []string
	for _, a := range src.asked {
		if a.r.Step == base && !slices.ContainsFunc(src.averaged, func(b asked) bool { return b == a }) {
			plain = append(plain, a.query)
		}
	}
	if !slices.Contains(plain, inboundQ) || slices.Contains(plain, mintsQ) {
		t.Errorf("history asked as it is: %q, want inbound and not the mints", plain)
	}
}
