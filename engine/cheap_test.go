package engine

import (
	"context"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emergent-sh/emergent/detector"
	"github.com/emergent-sh/emergent/sources"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
)

// filteringSource answers a query narrowed to some services (sources.FilteredQuery) with the
// series of those services in fakeSource's answer to the query as configured, and keeps which
// services each filtered query asked for.
type filteringSource struct {
	*fakeSource
	filtered  [][]string  // the services of each filtered query, in order
	wholeFrom []time.Time // the start of each unfiltered query at the evaluation step
	// unlabelled are queries whose series lack the service label, as a query's whose groups
	// come from label_replace: narrowed, they match nothing.
	unlabelled map[string]bool
}

func (f *filteringSource) QueryRange(ctx context.Context, q string, r sources.Range) (model.Matrix, sources.Warnings, error) {
	expr, err := parser.NewParser(parser.Options{}).ParseExpr(q)
	if err != nil {
		return nil, nil, err
	}
	var only *regexp.Regexp
	parser.Inspect(expr, func(node parser.Node, _ []parser.Node) error {
		if vs, ok := node.(*parser.VectorSelector); ok {
			vs.LabelMatchers = slices.DeleteFunc(vs.LabelMatchers, func(m *labels.Matcher) bool {
				if m.Name == "service" && m.Type == labels.MatchRegexp {
					only = regexp.MustCompile("^(?:" + m.Value + ")$")
					return true
				}
				return false
			})
		}
		return nil
	})
	m, w, err := f.fakeSource.QueryRange(ctx, expr.String(), r)
	if only == nil || err != nil {
		if r.Step == 30*time.Second {
			f.mu.Lock()
			f.wholeFrom = append(f.wholeFrom, r.Start)
			f.mu.Unlock()
		}
		return m, w, err
	}
	f.mu.Lock()
	f.filtered = append(f.filtered, []string{only.String()})
	f.mu.Unlock()
	if f.unlabelled[expr.String()] {
		return nil, w, nil
	}
	return slices.DeleteFunc(m, func(s *model.SampleStream) bool { return !only.MatchString(string(s.Metric["service"])) }), w, nil
}

// fellBack reports whether every group was replayed from before what the rules remember.
func (f *filteringSource) fellBack() bool {
	return slices.ContainsFunc(f.wholeFrom, func(t time.Time) bool { return t.Before(now.Add(-time.Hour)) })
}

// startAndRun starts an engine on src at now, with carried handed over and cheap or not, runs
// it until until, and lists the episodes open at or after since.
func startAndRun(t *testing.T, src *filteringSource, cheap bool, carried []detector.Episode, until, since time.Time) []string {
	t.Helper()
	e := New(restoreConfig(), src, slog.New(slog.DiscardHandler), nil)
	if cheap {
		e.CheapReplay()
	}
	e.Carry(carried)
	events, err := e.Bootstrap(context.Background(), now)
	if err != nil {
		t.Fatal(err)
	}
	more, err := e.Advance(context.Background(), until)
	if err != nil {
		t.Fatal(err)
	}
	return episodesAfter(since, append(events, more...), e.Active())
}

// cheapFleet is restoreFleet and twenty groups that do nothing, so that the incidents' are few
// enough to replay alone; unlabelled makes the mints query lose every series once narrowed.
func cheapFleet(lastStep time.Time, unlabelled bool) *filteringSource {
	src := restoreFleet(lastStep)
	for i := range 20 {
		svc := fmt.Sprintf("still-%02d", i)
		src.series[inboundQ][svc] = constant(3)
		src.series[mintsQ][svc] = constant(0.001)
	}
	return &filteringSource{fakeSource: src, unlabelled: map[string]bool{mintsQ: unlabelled}}
}

// TestCheapReplayFindsWhatTheFullOneDoes: a cold start that replays what the rules remember for
// every group and all of replay only for the groups stirred in it reports exactly the episodes,
// starts and ends, of one that replays everything, then and over the next hour and a half; and
// it asked the whole window for the stirred groups alone.
func TestCheapReplayFindsWhatTheFullOneDoes(t *testing.T) {
	testCheapReplay(t, false)
}

// TestCheapReplayCarriesAsTheFullOne: an episode start read back for a group that did nothing
// since (it ended unseen) pages in neither start-up, and one for a group still breaching keeps
// its start in both.
func TestCheapReplayCarriesAsTheFullOne(t *testing.T) {
	lastStep := now.Add(-2 * time.Minute)
	carried := []detector.Episode{
		{Rule: "token-minting", Labels: map[string]string{"service": "quiet"}, Start: now.Add(-3 * time.Hour)},
		{Rule: "token-minting", Labels: map[string]string{"service": "checkout"}, Start: now.Add(-9 * time.Hour)},
	}
	run := func(cheap bool) []string {
		src := cheapFleet(lastStep, false)
		eps := startAndRun(t, src, cheap, carried, now.Add(30*time.Minute), now.Add(-10*time.Hour))
		if cheap && src.fellBack() {
			t.Error("every group was replayed from the replay's start: the cheap start-up fell back")
		}
		return eps
	}
	want, got := run(false), run(true)
	if !slices.ContainsFunc(want, func(s string) bool { return strings.HasPrefix(s, "checkout "+now.Add(-9*time.Hour).Format("15:04:05")) }) {
		t.Fatalf("the full replay found %v: the carried start no longer tests anything", want)
	}
	if !slices.Equal(got, want) {
		t.Errorf("episodes:\n got  %v\n want %v", got, want)
	}
}

// TestCheapReplayFallsBackWhenNarrowingLoses: where a query narrowed to the stirred groups
// reads nothing for them (its series lack the group label), the start-up replays every group
// instead, and finds what the full replay finds.
func TestCheapReplayFallsBackWhenNarrowingLoses(t *testing.T) {
	testCheapReplay(t, true)
}

func testCheapReplay(t *testing.T, unlabelled bool) {
	t.Helper()
	lastStep := now.Add(-2 * time.Minute)
	run := func(cheap bool) ([]string, *filteringSource) {
		src := cheapFleet(lastStep, unlabelled)
		return startAndRun(t, src, cheap, nil, now.Add(90*time.Minute), now.Add(-7*time.Hour)), src
	}
	want, _ := run(false)
	got, src := run(true)
	if len(want) < 4 {
		t.Fatalf("the full replay found %v: the fleet no longer tests anything", want)
	}
	if !slices.Equal(got, want) {
		t.Errorf("episodes:\n got  %v\n want %v", got, want)
	}
	if unlabelled {
		if !src.fellBack() {
			t.Error("the narrowed queries read nothing for the stirred groups, and the start-up kept what they read")
		}
		return
	}
	if len(src.filtered) == 0 {
		t.Fatal("no query filtered to the stirred groups: everything was replayed for everyone")
	}
	for _, f := range src.filtered {
		for _, svc := range []string{"quiet", "still-00", "still-19"} {
			if regexp.MustCompile(f[0]).MatchString(svc) {
				t.Errorf("the whole window asked for %s, which did nothing in it (filter %s)", svc, f[0])
			}
		}
	}
	full := Align(now.Add(-6*time.Hour), 5*time.Minute)
	if first := src.firstReplayed(); !first.Equal(full) {
		t.Errorf("the stirred groups' replay began at %v, want replay's start", first)
	}
	if src.fellBack() {
		t.Errorf("every group was replayed from before what the rules remember (%v): the cheap start-up fell back", src.wholeFrom)
	}
}
