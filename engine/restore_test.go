package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emergent-sh/emergent/config"
	"github.com/emergent-sh/emergent/detector"
	"github.com/emergent-sh/emergent/sources"
	"github.com/prometheus/common/model"
)

// restoreConfig replays 6 hours and averages work over 10 minutes: its rule remembers
// 10m + for + resolve_for = 14 minutes.
func restoreConfig() *config.Config {
	cfg := testConfig()
	cfg.Global.Replay = model.Duration(6 * time.Hour)
	cfg.Rules[0].AverageOver, cfg.Rules[0].RecurWithin = model.Duration(10*time.Minute), model.Duration(10*time.Minute)
	return cfg
}

// between is v inside [from, to), before outside it.
func between(from, to time.Time, before, v float64) func(time.Time) float64 {
	return func(t time.Time) float64 {
		if t.Before(from) || !t.Before(to) {
			return before
		}
		return v
	}
}

// restoreFleet is incidents around a restart at now by a process whose predecessor evaluated
// until lastStep: one older than the replay that outlives the restart, one that ended long
// before, one that ended inside the restored replay (its tail), bursts that recur across the
// restart, one that began after the last step, a quiet one.
func restoreFleet(lastStep time.Time) *fakeSource {
	src := newFake(between(now.Add(-8*time.Hour), now.Add(20*time.Minute), 0.001, 2.5))
	mints := map[string]func(time.Time) float64{
		"ended": between(now.Add(-2*time.Hour), now.Add(-50*time.Minute), 0.001, 2.5),
		"bursty": func(t time.Time) float64 {
			if t.After(now.Add(-70*time.Minute)) && t.Sub(now.Add(-70*time.Minute))%(15*time.Minute) < 6*time.Minute {
				return 2.5
			}
			return 0.001
		},
		"gap":   between(lastStep.Add(time.Minute), now.Add(time.Hour), 0.001, 2.5),
		"tail":  between(now.Add(-3*time.Hour), lastStep.Add(-12*time.Minute), 0.001, 2.5),
		"quiet": constant(0.001),
	}
	for svc, fn := range mints {
		src.series[inboundQ][svc] = constant(3)
		src.series[mintsQ][svc] = fn
	}
	return src
}

// episodesAfter lists, from events and what is still open, the episodes open at or after t.
func episodesAfter(t time.Time, events []detector.Event, active []detector.Episode) []string {
	var out []string
	for _, ev := range events {
		if ev.Resolved && !ev.Episode.End.Before(t) {
			out = append(out, fmt.Sprintf("%s %s–%s", ev.Episode.Labels["service"], ev.Episode.Start.Format("15:04:05"), ev.Episode.End.Format("15:04:05")))
		}
	}
	for _, ep := range active {
		out = append(out, fmt.Sprintf("%s %s–open", ep.Labels["service"], ep.Start.Format("15:04:05")))
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// TestRestoredRestartMatchesAProcessThatNeverStopped: a process that restarts with the state its
// predecessor left (its open episodes and last evaluated step) replays only what the rule
// remembers, not global.replay, and from then on reports exactly the episodes the predecessor
// would have, had it never stopped: same starts, same ends.
func TestRestoredRestartMatchesAProcessThatNeverStopped(t *testing.T) {
	lastStep := now.Add(-3 * time.Minute) // the predecessor's last evaluation
	end := now.Add(90 * time.Minute)

	src := restoreFleet(lastStep)
	kept, keptEvents, restarted := runWithRestart(t, src, lastStep, end)
	compareRestart(t, restarted, src, lastStep, end, keptEvents, kept)
}

// runWithRestart runs a process from ten hours before now to end and makes, at lastStep, the
// process restarted from its state (not yet booted); what the source was asked before the
// restart is forgotten, so the restart's queries are the source's.
func runWithRestart(t *testing.T, src *fakeSource, lastStep, end time.Time) (kept *Engine, keptEvents []detector.Event, restarted *Engine) {
	t.Helper()
	kept = New(restoreConfig(), src, slog.New(slog.DiscardHandler), nil)
	if _, err := kept.Bootstrap(context.Background(), now.Add(-10*time.Hour)); err != nil {
		t.Fatal(err)
	}
	for at := now.Add(-10 * time.Hour); !at.After(end); at = at.Add(30 * time.Second) {
		evs, err := kept.Advance(context.Background(), at)
		if err != nil {
			t.Fatal(err)
		}
		keptEvents = append(keptEvents, evs...)
		if at.Equal(lastStep) {
			src.mu.Lock()
			src.asked = nil
			src.mu.Unlock()
			restarted = New(restoreConfig(), src, slog.New(slog.DiscardHandler), nil)
			restarted.Restore(kept.Active(), lastStep)
		}
	}
	return kept, keptEvents, restarted
}

// compareRestart boots the restored engine at now, advances it to end and compares it with the
// process that never stopped.
func compareRestart(t *testing.T, restarted *Engine, src *fakeSource, lastStep, end time.Time, keptEvents []detector.Event, kept *Engine) {
	t.Helper()
	events, err := restarted.Bootstrap(context.Background(), now)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range restarted.Alerts() {
		// The predecessor delivered that end; the replay saw only the tail, under a later start.
		if a.Labels["service"] == "tail" {
			t.Errorf("the restart delivers the tail of an episode its predecessor ended: %v–%v", a.StartsAt, a.EndsAt)
		}
	}
	firstReplayed := src.firstReplayed()
	memory := 14 * time.Minute
	if earliest := lastStep.Add(-memory - 5*time.Minute); firstReplayed.Before(earliest) || !firstReplayed.Before(lastStep.Add(-memory)) {
		t.Errorf("the restored replay began at %v; want within a baseline step before %v (last step − memory), not 6h back", firstReplayed, lastStep.Add(-memory))
	}
	evs, err := restarted.Advance(context.Background(), end)
	if err != nil {
		t.Fatal(err)
	}
	events = append(events, evs...)
	for _, ev := range events {
		// A restored episode that still breaches is announced in the words of a firing one.
		if !ev.Resolved && !ev.Updated && ev.Episode.Labels["service"] == "checkout" && strings.Contains(ev.Episode.Summary, "back to") {
			t.Errorf("the restored checkout episode fired as if resolving: %q", ev.Episode.Summary)
		}
	}
	got := episodesAfter(now, events, restarted.Active())
	want := episodesAfter(now, keptEvents, kept.Active())
	if !slices.Equal(got, want) {
		t.Errorf("episodes from the restart on:\n got  %q\n want %q (the process that never stopped)", got, want)
	}
	for _, svc := range []string{"checkout", "bursty", "gap"} {
		if !slices.ContainsFunc(want, func(s string) bool { return len(s) > len(svc) && s[:len(svc)+1] == svc+" " }) {
			t.Errorf("the process that never stopped has no %s episode after the restart: the fleet no longer tests it (%q)", svc, want)
		}
	}
}

// firstReplayed is the earliest step the engine asked a rule's queries for at the evaluation
// interval: where its replay began.
func (f *fakeSource) firstReplayed() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	var first time.Time
	for _, a := range f.asked {
		if a.query == inboundQ && a.r.Step == 30*time.Second && (first.IsZero() || a.r.Start.Before(first)) {
			first = a.r.Start
		}
	}
	return first
}

// readBack is what Prometheus answers for the exported state, per exporter: the rule's
// fingerprint, whether its history loaded, and its last evaluated step.
type readBack struct {
	fingerprint float64
	loaded      float64
	until       time.Time
	scraped     time.Time // zero: scraped until now
}

func (rb readBack) answers(rule string, into map[string]model.Matrix, instance int) {
	scraped := rb.scraped
	if scraped.IsZero() {
		scraped = now
	}
	add := func(q string, labels model.Metric, v float64) {
		labels["instance"] = model.LabelValue(fmt.Sprint(instance))
		into[q] = append(into[q], &model.SampleStream{Metric: labels, Values: []model.SamplePair{{Timestamp: model.TimeFromUnixNano(scraped.UnixNano()), Value: model.SampleValue(v)}}})
	}
	add(fmt.Sprintf("last_over_time(%s[6h])", fingerprintMetric), model.Metric{"rule": model.LabelValue(rule)}, rb.fingerprint)
	add(fmt.Sprintf("last_over_time(%s[6h])", historyLoadedMetric), model.Metric{"rule": model.LabelValue(rule)}, rb.loaded)
	add(lastEvaluationMetric, model.Metric{}, float64(rb.until.Unix()))
}

// TestRestoreOnlyFromTheSameRules: the short replay is taken only from processes that ran these
// rules unchanged with their history loaded, and not when any ran them otherwise; without one,
// the replay covers global.replay.
func TestRestoreOnlyFromTheSameRules(t *testing.T) {
	cfg := restoreConfig()
	same := fingerprint(cfg.Global, cfg.Rules[0])
	lastStep := now.Add(-2 * time.Minute)
	full := Align(now.Add(-6*time.Hour), 5*time.Minute)
	short := Align(lastStep.Add(-14*time.Minute), 5*time.Minute)
	for _, tc := range []struct {
		name      string
		exporters []readBack
		want      time.Time
	}{
		{"same rules, loaded", []readBack{{same, 1, lastStep, time.Time{}}}, short},
		{"nothing exported", nil, full},
		{"other rules", []readBack{{same + 1, 1, lastStep, time.Time{}}}, full},
		{"history still loading", []readBack{{same, 0, lastStep, time.Time{}}}, full},
		{"this process, scraped while loading, beside the one that ran", []readBack{{same, 1, lastStep, time.Time{}}, {same, 0, now.Add(-6 * time.Hour), time.Time{}}}, short},
		{"one of two replicas has other rules", []readBack{{same, 1, lastStep, time.Time{}}, {same + 1, 1, lastStep, time.Time{}}}, full},
		{"two live replicas: the earlier last step", []readBack{{same, 1, lastStep, time.Time{}}, {same, 1, lastStep.Add(-time.Hour), time.Time{}}}, Align(lastStep.Add(-time.Hour-14*time.Minute), 5*time.Minute)},
		{"a replica stopped long ago is not the last", []readBack{{same, 1, lastStep, time.Time{}}, {same, 1, lastStep.Add(-time.Hour), lastStep.Add(-time.Hour)}}, short},
		{"last step too old to shorten anything", []readBack{{same, 1, now.Add(-5*time.Hour - 50*time.Minute), time.Time{}}}, full},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := newFake(constant(0.001))
			src.answers = map[string]model.Matrix{}
			for i, rb := range tc.exporters {
				rb.answers(cfg.Rules[0].Name, src.answers, i)
			}
			e := New(cfg, src, slog.New(slog.DiscardHandler), nil)
			e.ReadStartsBack()
			if _, err := e.Bootstrap(context.Background(), now); err != nil {
				t.Fatal(err)
			}
			if got := src.firstReplayed(); !got.Equal(tc.want) {
				t.Errorf("replay began at %v, want %v", got, tc.want)
			}
		})
	}
	if math.IsNaN(same) || same != math.Trunc(same) || same >= 1<<53 {
		t.Errorf("fingerprint %v is not an integer a float64 holds exactly", same)
	}
}

// TestSavedStateContinuesExactly: a process that loads the state its predecessor saved at its
// last step, instead of reading history back, evaluates every step since as the predecessor
// would have: the same events, the same words, the same alerts.
func TestSavedStateContinuesExactly(t *testing.T) {
	lastStep := now.Add(-3 * time.Minute)
	end := now.Add(90 * time.Minute)
	src := restoreFleet(lastStep)
	kept := New(restoreConfig(), src, slog.New(slog.DiscardHandler), nil)
	if _, err := kept.Bootstrap(context.Background(), lastStep.Add(-6*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, err := kept.Advance(context.Background(), lastStep); err != nil {
		t.Fatal(err)
	}
	var saved bytes.Buffer
	if err := kept.SaveState(&saved); err != nil {
		t.Fatal(err)
	}
	restarted := New(restoreConfig(), src, slog.New(slog.DiscardHandler), nil)
	if err := restarted.LoadState(bytes.NewReader(saved.Bytes()), now); err != nil {
		t.Fatal(err)
	}
	src.mu.Lock()
	src.asked = nil
	src.mu.Unlock()
	var want, got []detector.Event
	for at := now; !at.After(end); at = at.Add(10 * time.Minute) {
		w, err := kept.Advance(context.Background(), at)
		if err != nil {
			t.Fatal(err)
		}
		g, err := restarted.Advance(context.Background(), at)
		if err != nil {
			t.Fatal(err)
		}
		want, got = append(want, w...), append(got, g...)
		if w, g := alertsText(kept), alertsText(restarted); w != g {
			t.Fatalf("alerts at %v:\n got  %s\n want %s", at, g, w)
		}
	}
	if len(want) == 0 {
		t.Fatal("no event after the restart: the fleet no longer tests anything")
	}
	if w, g := fmt.Sprintf("%+v", want), fmt.Sprintf("%+v", got); w != g {
		t.Errorf("events after the restart:\n got  %s\n want %s", g, w)
	}
	for _, a := range src.asked {
		if a.r.Step != 30*time.Second || a.r.Start.Before(lastStep) {
			t.Errorf("the restart asked %s for %v–%v at %v: it should only evaluate the steps since %v", a.query, a.r.Start, a.r.End, a.r.Step, lastStep)
			break
		}
	}
}

// TestSavedStateOfOtherRulesIsNotLoaded: a state file written by other rules, or too long ago,
// is refused with ErrStateMismatch and changes nothing; a damaged one is refused too.
func TestSavedStateOfOtherRulesIsNotLoaded(t *testing.T) {
	src := restoreFleet(now)
	kept := New(restoreConfig(), src, slog.New(slog.DiscardHandler), nil)
	if _, err := kept.Bootstrap(context.Background(), now.Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	var saved bytes.Buffer
	if err := kept.SaveState(&saved); err != nil {
		t.Fatal(err)
	}
	other := restoreConfig()
	other.Rules[0].For = model.Duration(3 * time.Minute)
	for _, tc := range []struct {
		name     string
		cfg      *config.Config
		data     []byte
		at       time.Time
		mismatch bool
	}{
		{"a rule changed", other, saved.Bytes(), now, true},
		{"older than replay", restoreConfig(), saved.Bytes(), now.Add(7 * time.Hour), true},
		{"damaged", restoreConfig(), saved.Bytes()[:saved.Len()/2], now, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := New(tc.cfg, src, slog.New(slog.DiscardHandler), nil)
			err := e.LoadState(bytes.NewReader(tc.data), tc.at)
			if err == nil || errors.Is(err, ErrStateMismatch) != tc.mismatch {
				t.Fatalf("err %v, want a mismatch: %v", err, tc.mismatch)
			}
			if e.Bootstrapped() || len(e.Active()) != 0 {
				t.Errorf("a refused state file left the engine loaded (%d active)", len(e.Active()))
			}
		})
	}
}

func alertsText(e *Engine) string {
	var b strings.Builder
	for _, a := range e.Alerts() {
		fmt.Fprintf(&b, "%+v\n", *a)
	}
	return b.String()
}

// TestPastEpisodesDoNotTeach: an earlier process's episode, read back over the history, is not
// learned as the group's level by the process started after it, which then pages the same
// incident back as the earlier one would have; without the read-back, four hours of it in a
// day of history are learned as the level.
func TestPastEpisodesDoNotTeach(t *testing.T) {
	earlier := between(now.Add(-20*time.Hour), now.Add(-16*time.Hour), 0.01, 0.1)
	mints := func(at time.Time) float64 {
		if at.After(now.Add(-30 * time.Minute)) {
			return 0.1 // back
		}
		return earlier(at)
	}
	past := model.Matrix{{Metric: model.Metric{"rule": "token-minting", "service": "checkout", "instance": "emergentd:9799"}}}
	for at := now.Add(-20 * time.Hour); !at.After(now.Add(-16 * time.Hour)); at = at.Add(5 * time.Minute) {
		past[0].Values = append(past[0].Values, model.SamplePair{Timestamp: model.TimeFromUnixNano(at.UnixNano()), Value: model.SampleValue(now.Add(-20 * time.Hour).Unix())})
	}
	for _, tc := range []struct {
		name     string
		readBack bool
		fires    bool
	}{
		{"read back", true, true},
		{"not read back", false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig()
			cfg.Rules[0].Signals[0].Ceiling = 0 // the level is learned
			src := newFake(mints)
			src.answers = map[string]model.Matrix{}
			if tc.readBack {
				src.answers[fmt.Sprintf("last_over_time(%s[5m])", EpisodeStartMetric)] = past
			}
			e := New(cfg, src, slog.New(slog.DiscardHandler), nil)
			e.ReadStartsBack()
			if _, err := e.Bootstrap(context.Background(), now); err != nil {
				t.Fatal(err)
			}
			if got := len(e.Active()) == 1; got != tc.fires {
				t.Errorf("firing %v, want %v (active: %+v)", got, tc.fires, e.Active())
			}
		})
	}
}

// TestCacheResetRefillsInHistoryDoNotTeach: the refills after cache resets that a history read at
// start-up holds are not learned as the group's level, as a live process, which holds each
// reset as a transient, does not learn them: a process started after six of them (an hour
// each, a quarter of its day of history) still pages the thrash that mints as much. Without
// the cache_resets query there is nothing to tell a refill from the level, and it does not.
func TestCacheResetRefillsInHistoryDoNotTeach(t *testing.T) {
	const resetsQ = `sum by (service) (resets(redis_uptime_in_seconds[1h])) > 0`
	refilling := func(at time.Time) bool {
		since := at.Sub(now.Add(-20 * time.Hour))
		return since >= 0 && at.Before(now.Add(-8*time.Hour)) && since%(2*time.Hour) < time.Hour
	}
	mints := func(at time.Time) float64 {
		switch {
		case at.After(now.Add(-30 * time.Minute)):
			return 0.1 // a thrash
		case refilling(at):
			return 0.1 // each cache refills after the reset
		}
		return 0.01
	}
	for _, tc := range []struct {
		name, resets string
		fires        bool
	}{
		{"with cache_resets", resetsQ, true},
		{"without", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig()
			cfg.Rules[0].Signals[0].Ceiling = 0 // the level is learned
			cfg.Rules[0].CacheResets, cfg.Rules[0].Settle = tc.resets, model.Duration(5*time.Minute)
			src := newFake(mints)
			src.series[resetsQ] = map[string]func(time.Time) float64{"checkout": func(at time.Time) float64 {
				if refilling(at) {
					return 1
				}
				return math.NaN() // `> 0` leaves no series
			}}
			e := New(cfg, src, slog.New(slog.DiscardHandler), nil)
			if _, err := e.Bootstrap(context.Background(), now); err != nil {
				t.Fatal(err)
			}
			if got := len(e.Active()) == 1; got != tc.fires {
				t.Errorf("firing %v, want %v (active: %+v)", got, tc.fires, e.Active())
			}
		})
	}
}

// TestRestoredEpisodeKeepsItsLull: an episode of stampedes, held open through the quiet between
// them by its average (a lull), is restored open and stays so when the restored replay begins
// in a quiet stretch: the average it starts from takes in the episode's steps, as the live one
// did. From the steps before the episode alone, it resolved in the first quiet and paged the
// next stampede as a new episode.
func TestRestoredEpisodeKeepsItsLull(t *testing.T) {
	lastStep := now.Add(-3 * time.Minute)
	end := now.Add(30 * time.Minute)
	first := now.Add(-3*time.Hour + 3*time.Minute) // the replay, from about now-20m, begins between stampedes
	src := newFake(func(at time.Time) float64 {
		if !at.Before(first) && at.Sub(first)%(8*time.Minute) < 3*time.Minute {
			return 2.5 // a stampede at each expiry, quiet for less than average_over between
		}
		return 0.001
	})
	kept, keptEvents, restarted := runWithRestart(t, src, lastStep, end)
	want := episodesAfter(now, keptEvents, kept.Active())
	if len(want) != 1 || !strings.HasSuffix(want[0], "–open") {
		t.Fatalf("the process that never stopped has %q after the restart; want one episode still open", want)
	}
	events, err := restarted.Bootstrap(context.Background(), now)
	if err != nil {
		t.Fatal(err)
	}
	evs, err := restarted.Advance(context.Background(), end)
	if err != nil {
		t.Fatal(err)
	}
	if got := episodesAfter(now, append(events, evs...), restarted.Active()); !slices.Equal(got, want) {
		t.Errorf("episodes from the restart on:\n got  %q\n want %q (the process that never stopped)", got, want)
	}
}

// windowedResets answers a cache_resets query as Prometheus would over a range of own: above
// zero at a step whose range holds the reset, and the range widened to the step plus own when
// asked averaged over the step (sources.StepAveragedQuery). Other queries are the fake's.
type windowedResets struct {
	*fakeSource
	query string
	own   time.Duration
	reset time.Time
}

func (w *windowedResets) answer(ctx context.Context, q string, r sources.Range, window time.Duration) (model.Matrix, sources.Warnings, error) {
	if q != w.query {
		return w.fakeSource.QueryRange(ctx, q, r)
	}
	ss := &model.SampleStream{Metric: model.Metric{"service": "checkout"}}
	for t := r.Start; !t.After(r.End); t = t.Add(r.Step) {
		if w.reset.After(t.Add(-window)) && !w.reset.After(t) {
			ss.Values = append(ss.Values, model.SamplePair{Timestamp: model.TimeFromUnixNano(t.UnixNano()), Value: 1})
		}
	}
	return model.Matrix{ss}, nil, nil
}

func (w *windowedResets) QueryRange(ctx context.Context, q string, r sources.Range) (model.Matrix, sources.Warnings, error) {
	return w.answer(ctx, q, r, w.own)
}

func (w *windowedResets) QueryRangeStepAveraged(ctx context.Context, q string, r sources.Range) (model.Matrix, sources.Warnings, error) {
	return w.answer(ctx, q, r, r.Step+w.own)
}

// TestResetBeforeTheReplayIsHeld: a cache reset between the history's last step and the
// replay's first, which neither's ranges reach, is read once more at start-up and held for
// cache_refill, as the process that saw it live held it: its refill, running on into the
// replay, does not page. Without that read, the refill paged as work above the ceiling.
func TestResetBeforeTheReplayIsHeld(t *testing.T) {
	const resetsQ = `sum by (service) (resets(redis_uptime_in_seconds[2m])) > 0`
	cfg := testConfig()
	replayStart := Align(now.Add(-time.Duration(cfg.Global.Replay)), time.Duration(cfg.Global.BaselineStep))
	reset := replayStart.Add(-3 * time.Minute) // after the history's last step, before the replay's ranges
	cfg.Rules[0].CacheResets, cfg.Rules[0].CacheRefill = resetsQ, model.Duration(time.Hour)
	cfg.Rules[0].Settle = model.Duration(5 * time.Minute)
	src := &windowedResets{fakeSource: newFake(func(at time.Time) float64 {
		if !at.Before(reset) && at.Before(reset.Add(40*time.Minute)) {
			return 0.1 // the caches refill, twice the ceiling, for 40 minutes
		}
		return 0.001
	}), query: resetsQ, own: 2 * time.Minute, reset: reset}
	e := New(cfg, src, slog.New(slog.DiscardHandler), nil)
	events, err := e.Bootstrap(context.Background(), now)
	if err != nil {
		t.Fatal(err)
	}
	if fired := slices.DeleteFunc(events, func(ev detector.Event) bool { return ev.Resolved }); len(fired) > 0 {
		t.Errorf("the refill after the reset at %s paged: %s", reset.Sub(replayStart), fired[0].Episode.Summary)
	}
}
