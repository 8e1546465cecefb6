package engine

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emergent-sh/emergent/sources"
	"github.com/prometheus/common/model"
)

// spoilingSource is fakeSource as a sources.Recycler that spoils each answer handed back: an
// engine that read an answer after recycling it would see no series and NaN samples.
type spoilingSource struct {
	*fakeSource
	mu       sync.Mutex
	recycled map[*model.SampleStream]bool
}

func (s *spoilingSource) Recycle(q string, m model.Matrix) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ss := range m {
		if s.recycled[ss] {
			panic(fmt.Sprintf("query %q: a series was handed back twice", q))
		}
		s.recycled[ss] = true
		for i := range ss.Values {
			ss.Values[i] = model.SamplePair{Timestamp: ss.Values[i].Timestamp, Value: model.SampleValue(math.NaN())}
		}
		ss.Metric = model.Metric{"spoiled": "true"}
	}
	clear(m)
}

var _ sources.Recycler = (*spoilingSource)(nil)

// TestRecycledAnswersAreNotReadAgain: the engine hands each answer back once, after it has
// evaluated it, and never reads it again: spoiling every answer handed back changes no event.
func TestRecycledAnswersAreNotReadAgain(t *testing.T) {
	onset := now.Add(-20 * time.Minute)
	// Up for 30 minutes from 20 minutes before the start: fires in the replay, resolves live.
	mints := func(t time.Time) float64 {
		if !t.Before(onset) && t.Before(onset.Add(30*time.Minute)) {
			return 2.5
		}
		return 0.001
	}
	run := func(src Source) string {
		e := New(testConfig(), src, slog.New(slog.DiscardHandler), nil)
		events, err := e.Bootstrap(context.Background(), now)
		if err != nil {
			t.Fatal(err)
		}
		out := fmt.Sprintf("bootstrap: %+v\n", events)
		for step := range 40 {
			at := now.Add(time.Duration(step+1) * 30 * time.Second)
			events, err := e.Advance(context.Background(), at)
			if err != nil {
				t.Fatal(err)
			}
			out += fmt.Sprintf("%s: %+v, active %d\n", at.Format(time.TimeOnly), events, len(e.Active()))
		}
		return out
	}
	want := run(newFake(mints))
	src := &spoilingSource{fakeSource: newFake(mints), recycled: map[*model.SampleStream]bool{}}
	if got := run(src); got != want {
		t.Errorf("with answers spoiled once handed back:\n%s\nwant\n%s", got, want)
	}
	// Every series of every answer was handed back: one per query and fetch, one service each.
	if len(src.recycled) != src.calls {
		t.Errorf("%d series handed back, want %d (one per query answered)", len(src.recycled), src.calls)
	}
	if !strings.Contains(want, "Resolved:true") {
		t.Errorf("precondition: the run fires and resolves:\n%s", want)
	}
}
