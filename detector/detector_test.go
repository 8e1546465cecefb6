package detector

import (
	"math"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emergent-sh/emergent/config"
	"github.com/prometheus/common/model"
)

// expand turns a compact series description into values, as Prometheus's test language does:
// "1+2x3" is 1 3 5 7, "5x2" is 5 5 5, "_x3" is three missing steps, "4" is one step.
func expand(t testing.TB, desc string) []float64 {
	t.Helper()
	var out []float64
	for _, tok := range strings.Fields(desc) {
		base, times := tok, 0
		if i := strings.LastIndex(tok, "x"); i > 0 {
			n, err := strconv.Atoi(tok[i+1:])
			if err != nil {
				t.Fatalf("bad token %q", tok)
			}
			base, times = tok[:i], n
		}
		if base == "_" {
			for range times {
				out = append(out, math.NaN())
			}
			continue
		}
		start, inc := base, "0"
		if i := strings.Index(base[1:], "+"); i >= 0 {
			start, inc = base[:i+1], base[i+2:]
		} else if i := strings.Index(base[1:], "-"); i >= 0 {
			start, inc = base[:i+1], "-"+base[i+2:]
		}
		a, err1 := strconv.ParseFloat(start, 64)
		b, err2 := strconv.ParseFloat(inc, 64)
		if err1 != nil || err2 != nil {
			t.Fatalf("bad token %q", tok)
		}
		for k := 0; k <= times; k++ {
			out = append(out, a+float64(k)*b)
		}
	}
	return out
}

var (
	t0      = time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC)
	service = map[string]string{"service": "checkout"}
)

const key = `service="checkout"`

func global(interval time.Duration) config.Global {
	return config.Global{
		EvaluationInterval: model.Duration(interval),
		BaselineStep:       model.Duration(5 * time.Minute),
		History:            model.Duration(7 * 24 * time.Hour),
	}
}

// series is one group's inputs over time: each field a compact description (empty = absent).
type series struct {
	inbound, work, flushes, keys, writes, commands string
	instances                                      int
}

// run evaluates the rule over the series at the given interval, starting at start, and returns
// every event.
func run(t *testing.T, r *Rule, s series, start time.Time, interval time.Duration) []Event {
	t.Helper()
	cols := map[string][]float64{}
	n := 0
	for name, d := range map[string]string{"in": s.inbound, "work": s.work, "flushes": s.flushes, "keys": s.keys, "writes": s.writes, "cmd": s.commands} {
		if d != "" {
			cols[name] = expand(t, d)
			n = max(n, len(cols[name]))
		}
	}
	pick := func(name string, i int) Values {
		c, ok := cols[name]
		if !ok || i >= len(c) || math.IsNaN(c[i]) {
			return Values{}
		}
		return Values{key: c[i]}
	}
	var events []Event
	for i := range n {
		in := Input{
			Time:     start.Add(time.Duration(i) * interval),
			Groups:   map[string]map[string]string{key: service},
			Inbound:  pick("in", i),
			Signals:  []Values{pick("work", i)},
			Keys:     pick("keys", i),
			Writes:   pick("writes", i),
			Commands: pick("cmd", i),
		}
		if f := pick("flushes", i); len(f) > 0 {
			in.Flushes = map[string]Values{key: {`cmd="flushdb"`: f[key]}}
		}
		if s.instances > 0 {
			in.Instances = map[string]Values{key: {}}
			for k := range s.instances {
				in.Instances[key][strconv.Itoa(k)] = 1
			}
		}
		events = append(events, r.Eval(in)...)
	}
	return events
}

func tokenRule(relation string) config.Rule {
	return config.Rule{
		Name: "token-minting", Kind: config.KindSelfGenerated, Severity: "warning",
		GroupBy: []string{"service"}, For: model.Duration(2 * time.Minute), ResolveFor: model.Duration(2 * time.Minute),
		Hysteresis: 0.8, MinUnexplainedShare: 0.5, MinUnexplainedRate: 0.01, IdleInbound: 0.05,
		Signals: []config.Signal{{Name: "token_mints", Unit: "token mints", Relation: relation, Ceiling: 0.02, MaxRatio: 0.01}},
	}
}

func flushRule() config.Rule {
	return config.Rule{
		Name: "redis-flush-storm", Kind: config.KindFlushStorm, Severity: "critical", GroupBy: []string{"service"},
		ResolveFor: model.Duration(5 * time.Minute), Hysteresis: 0.8, MinFlushes: 3,
		Window: model.Duration(10 * time.Minute), CollapseFraction: 0.5, MinKeys: 100,
		Flushes: "f", Keys: "k",
	}
}

// recurring is r with recur_within set.
func recurring(r config.Rule, within time.Duration) config.Rule {
	r.RecurWithin = model.Duration(within)
	return r
}

// keysOnly is rule reading the keyspace without flush commands.
func keysOnly(r config.Rule) config.Rule {
	r.Flushes = ""
	return r
}

type wantEpisode struct {
	fireStep    int // step index the episode fires at, -1 for none
	resolveStep int // -1 for still active
}

func TestEpisodes(t *testing.T) {
	const step = 30 * time.Second
	tests := []struct {
		name  string
		rule  config.Rule
		in    series
		want  []wantEpisode
		check func(t *testing.T, ev Event)
	}{
		{
			name: "fragmented cache fires after for and resolves after resolve_for",
			rule: tokenRule(config.RelationBounded),
			// onset at step 10; for=2m=4 steps → fires at 14; fixed at step 31; resolve_for 4 steps → 35.
			in:   series{inbound: "2x40", work: "0.001x9 1.9x20 0.001x10", instances: 4},
			want: []wantEpisode{{fireStep: 14, resolveStep: 35}},
			check: func(t *testing.T, ev Event) {
				if !strings.Contains(ev.Episode.Explanation.Diagnosis, "4 instances do the work") {
					t.Errorf("diagnosis %q does not name the instances", ev.Episode.Explanation.Diagnosis)
				}
			},
		},
		{
			name: "idle but busy",
			rule: tokenRule(config.RelationBounded),
			in:   series{inbound: "0.01x20", work: "0.3x20"},
			want: []wantEpisode{{fireStep: 4, resolveStep: -1}},
			check: func(t *testing.T, ev Event) {
				if !strings.Contains(ev.Episode.Explanation.Diagnosis, "idle but busy") {
					t.Errorf("diagnosis %q does not say idle but busy", ev.Episode.Explanation.Diagnosis)
				}
			},
		},
		{
			name: "surge followed proportionally is not an anomaly",
			rule: tokenRule(config.RelationProportional),
			in:   series{inbound: "2x10 10x20 2x10", work: "0.002x10 0.01x20 0.002x10"},
		},
		{
			name: "a blip shorter than for stays pending",
			rule: tokenRule(config.RelationBounded),
			in:   series{inbound: "2x20", work: "0x5 2x2 0x10"},
		},
		{
			name: "missing data neither fires nor resolves",
			rule: tokenRule(config.RelationBounded),
			// fires at 4 (steps 0-4 breach); gap 5-24 would resolve if it counted as zero work.
			in:   series{inbound: "2x4 _x20 2x5", work: "1.9x4 _x20 1.9x5"},
			want: []wantEpisode{{fireStep: 4, resolveStep: -1}},
		},
		{
			name: "pending does not advance to firing on unknown steps alone",
			rule: tokenRule(config.RelationBounded),
			in:   series{inbound: "2x1 _x10 2", work: "1.9x1 _x10 0"},
		},
		{
			name: "three flushes in ten minutes are a storm",
			rule: flushRule(),
			// counter appears at 1 (the first flush) at step 1, then flushes at 6 and 11: fires at 11.
			// No flush after step 11: clear from 12, resolve_for 10 steps → resolves at 22, not a
			// window later (the flushes still in the window do not keep a finished storm open).
			in:   series{flushes: "_x1 1x4 2x4 3x20", keys: "1000x40"},
			want: []wantEpisode{{fireStep: 11, resolveStep: 22}},
		},
		{
			name: "one maintenance flush is an event",
			rule: flushRule(),
			in:   series{flushes: "_x4 1x30", keys: "1000x4 10 20 300 1000x25"},
		},
		{
			name: "a redis restart is an event",
			rule: flushRule(),
			// counters vanish and keys collapse once, then everything comes back.
			in: series{flushes: "7x4 _x3 7x20", keys: "5000x4 _x2 0 2000 5000x18"},
		},
		{
			// Keys that expire in waves swing from scrape to scrape; measured against the last
			// step alone, three of these swings were "collapses" and a storm.
			name: "keys that swing around their level are no collapse",
			rule: flushRule(),
			in:   series{keys: "1200 1750 920 2360 1250 1580 740 2800 1690 750 2650 1760 736 2000x3"},
		},
		{
			// The second storm keeps its own clear time: it resolves resolve_for after its last
			// flush, not at its first quiet step because the first storm once cleared.
			name: "a second storm lasts its own resolve_for",
			rule: flushRule(),
			in:   series{flushes: "_x1 1 2 3x62 4 5 6x20", keys: "1000x88"},
			want: []wantEpisode{{fireStep: 3, resolveStep: 14}, {fireStep: 68, resolveStep: 79}},
		},
		{
			// Flushes on the write path come as uploads do, which pause: a storm back within
			// recur_within of its last flush is the same storm, and its episode stays open through
			// quiet as long as the gap it showed (65 steps) past resolve_for, through the third
			// burst, and resolves resolve_for plus that gap after the last flush (step 91).
			name: "a storm back within recur_within is one episode",
			rule: recurring(flushRule(), time.Hour),
			in:   series{flushes: "_x1 1 2 3x62 4 5 6x20 7 8 9x100", keys: "1000x192"},
			want: []wantEpisode{{fireStep: 3, resolveStep: 14}, {fireStep: 68, resolveStep: 92 + 10 + 65}},
		},
		{
			// The second storm came 65 steps (32.5 min) after the first: a new page. The third came
			// 23 steps after the second's last flush: the second back, open 23 steps longer.
			name: "a storm back after recur_within pages again",
			rule: recurring(flushRule(), 30*time.Minute),
			in:   series{flushes: "_x1 1 2 3x62 4 5 6x20 7 8 9x100", keys: "1000x192"},
			want: []wantEpisode{{fireStep: 3, resolveStep: 14}, {fireStep: 68, resolveStep: 79}, {fireStep: 91, resolveStep: 92 + 10 + 23}},
		},
		{
			name: "keyspace collapses are a storm where flush commands are not watched",
			rule: keysOnly(flushRule()),
			in:   series{keys: "1000 10 1000 10 1000 10 1000x5"},
			want: []wantEpisode{{fireStep: 5, resolveStep: -1}},
		},
		{
			// Keys written together expire together: a healthy keyspace (seen in the fleetsim
			// corpus, every few minutes for days) empties itself with no flush at all.
			name: "a keyspace that empties by itself is no storm where flush commands are watched",
			rule: flushRule(),
			in:   series{keys: "1000 10 1000 10 1000 10 1000x5"},
		},
		{
			// The storm's flushes stop while the keyspace goes on emptying itself: it resolves
			// resolve_for after the last flush, not never.
			name: "a storm on a keyspace that empties by itself resolves when its flushes stop",
			rule: flushRule(),
			in:   series{flushes: "_x1 1 2 3x30", keys: "1000 10 1000 10 1000 10 1000 10 1000 10 1000 10 1000 10 1000 10 1000 10 1000 10 1000 10 1000 10 1000 10 1000 10 1000x5"},
			want: []wantEpisode{{fireStep: 3, resolveStep: 14}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := NewRule(tc.rule, global(step))
			events := run(t, r, tc.in, t0, step)
			var got []wantEpisode
			for _, ev := range events {
				idx := func(at time.Time) int { return int(at.Sub(t0) / step) }
				if !ev.Resolved {
					got = append(got, wantEpisode{fireStep: idx(ev.Episode.Start), resolveStep: -1})
					if tc.check != nil {
						tc.check(t, ev)
					}
					continue
				}
				if len(got) == 0 {
					t.Fatalf("resolve without fire: %+v", ev)
				}
				got[len(got)-1].resolveStep = idx(ev.Episode.End)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got episodes %+v, want %+v", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Errorf("episode %d: got %+v, want %+v", i, got[i], tc.want[i])
				}
			}
		})
	}
}

// A second replica, or a restart, that starts later on the same data finds the same episode
// start: the start comes from the data, not from when the process began.
func TestEpisodeStartDoesNotDependOnProcessStart(t *testing.T) {
	const step = 30 * time.Second
	in := series{inbound: "2x60", work: "0x9 1.9x50"}
	first := run(t, NewRule(tokenRule(config.RelationBounded), global(step)), in, t0, step)

	// The late replica replays the same window from its own start (the engine does this with
	// global.replay); here, it simply starts evaluating 5 steps later.
	late := series{inbound: "2x55", work: "0x4 1.9x50"}
	second := run(t, NewRule(tokenRule(config.RelationBounded), global(step)), late, t0.Add(5*step), step)
	if len(first) != 1 || len(second) != 1 {
		t.Fatalf("want one episode each, got %d and %d", len(first), len(second))
	}
	if !first[0].Episode.Start.Equal(second[0].Episode.Start) {
		t.Errorf("start differs: %s vs %s", first[0].Episode.Start, second[0].Episode.Start)
	}
}

func TestFitProportionalIsRobust(t *testing.T) {
	var in, work []float64
	for i := range 200 {
		x := 1 + float64(i%50)
		in = append(in, x)
		w := 0.02*x + 0.5
		if i%10 == 0 { // a tenth of history is an earlier incident
			w *= 40
		}
		work = append(work, w)
	}
	fit, ok := fitProportional(in, work, 0)
	if !ok {
		t.Fatal("fit not ok")
	}
	if math.Abs(fit.Ratio-0.02) > 0.002 || math.Abs(fit.Floor-0.5) > 0.05 {
		t.Errorf("fit = %+v, want ratio 0.02 floor 0.5", fit)
	}
}

func TestSeasonalBaseline(t *testing.T) {
	h := newHistory(testClock(8*24*time.Hour, 5*time.Minute, 1), "g")
	for d := 1; d <= 7; d++ {
		day := t0.Add(-time.Duration(d) * 24 * time.Hour)
		h.put(day.Unix(), []float64{100 + float64(d)}, true) // same time of day on past days
		h.put(day.Add(time.Hour).Unix(), []float64{5}, true)
	}
	s := h.seasonalAt(t0.Unix(), 0)
	if s.Days != 7 || s.Usual != 104 {
		t.Errorf("seasonal = %+v, want 7 days, usual 104", s)
	}
	if got := classifyInbound(500, s, 0); got != InboundSurging {
		t.Errorf("500 vs usual 104: %s, want surging", got)
	}
	if got := classifyInbound(1, s, 0); got != InboundIdle {
		t.Errorf("1 vs usual 104: %s, want idle", got)
	}
	if got := classifyInbound(110, s, 0); got != InboundNormal {
		t.Errorf("110 vs usual 104: %s, want normal", got)
	}
}

// TestEachKindSaysWhatItsNumbersAre: the firing event of each kind carries its unit, whether its
// numbers are counts, and the paragraph plain-text receivers show, with the numbers in it.
func TestEachKindSaysWhatItsNumbersAre(t *testing.T) {
	for _, tc := range []struct {
		name       string
		rule       config.Rule
		in         series
		unit       string
		counts     bool
		paragraphs []string
	}{
		{"flush storm", flushRule(), series{flushes: "_x1 1x4 2x4 3x20", keys: "1000x40"},
			"flushes or keyspace collapses in 10m", true, []string{"3 flushes and 0 keyspace collapses in 10m."}},
		{"self-generated traffic", tokenRule(config.RelationBounded), series{inbound: "5x40", work: "0.001x20 1x20"},
			"token mints", false, []string{"Observed 1 token mints/s, expected ", "% unexplained). Inbound 5/s", "Why: "}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := NewRule(tc.rule, global(30*time.Second))
			events := run(t, r, tc.in, t0, 30*time.Second)
			if len(events) == 0 {
				t.Fatal("no episode fired")
			}
			ex := events[0].Episode.Explanation
			if ex.Unit != tc.unit || ex.Counts != tc.counts || r.WorkRates() == tc.counts {
				t.Errorf("unit %q, counts %v, work rates %v; want %q, %v", ex.Unit, ex.Counts, r.WorkRates(), tc.unit, tc.counts)
			}
			for _, p := range tc.paragraphs {
				if !strings.Contains(ex.Description, p) {
					t.Errorf("description %q lacks %q", ex.Description, p)
				}
			}
		})
	}
}

// A storm held open through quiet because it came back says so: paused, not stopped, and for
// how long it stays open; a storm that did not come back says its flushes stopped.
func TestStormHeldOpenSaysWhy(t *testing.T) {
	const step = 30 * time.Second
	// Storms at steps 3 and 68, the second back after 65 steps (32.5 min); 75 steps evaluated,
	// the last quiet and under resolve_for after the last flush.
	in := series{flushes: "_x1 1 2 3x62 4 5 6x6", keys: "1000x74"}
	for _, tc := range []struct {
		name       string
		rule       config.Rule
		want, lack string
		held       bool
	}{
		{"came back", recurring(flushRule(), time.Hour), "flushes paused", "stopped", true},
		{"did not", flushRule(), "flushes stopped", "paused", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := NewRule(tc.rule, global(step))
			run(t, r, in, t0, step)
			active := r.Active()
			if len(active) != 1 {
				t.Fatalf("want the second storm open, got %d episodes", len(active))
			}
			ex := active[0].Explanation
			if !strings.Contains(ex.Summary, tc.want) || strings.Contains(ex.Summary, tc.lack) {
				t.Errorf("summary %q: want %q, not %q", ex.Summary, tc.want, tc.lack)
			}
			held := strings.Contains(ex.Diagnosis, "came back after 33m of quiet before, so it is held open until 38m without one")
			if held != tc.held {
				t.Errorf("diagnosis %q: held open said %v, want %v", ex.Diagnosis, held, tc.held)
			}
		})
	}
}

// An episode's resolve names the work it paged on, back, even where another signal's share is
// larger at that step: the e2e suite's words check caught "Redis commands back to 20.9/s" after
// "token mints 3.89/s".
func TestResolveNamesTheSignalItPagedOn(t *testing.T) {
	const step = 30 * time.Second
	cfg := tokenRule(config.RelationBounded)
	cfg.Signals = append(cfg.Signals, config.Signal{Name: "redis_commands", Unit: "Redis commands", Relation: config.RelationProportional, MaxRatio: 2})
	r := NewRule(cfg, global(step))
	var fired, resolved []Event
	for i := range 60 {
		mints, commands := 0.005, 10.0
		switch {
		case i >= 10 && i < 30:
			mints = 1
		case i >= 30:
			mints, commands = 0.001, 12 // its share (1/6) is past the mints' (0), under the thresholds
		}
		in := Input{Time: t0.Add(time.Duration(i) * step), Groups: map[string]map[string]string{key: service},
			Inbound: Values{key: 5}, Signals: []Values{{key: mints}, {key: commands}}}
		for _, ev := range r.Eval(in) {
			if ev.Resolved {
				resolved = append(resolved, ev)
			} else if !ev.Updated {
				fired = append(fired, ev)
			}
		}
	}
	if len(fired) != 1 || len(resolved) != 1 {
		t.Fatalf("fired %d, resolved %d; want one of each", len(fired), len(resolved))
	}
	if got := resolved[0].Episode.Summary; !strings.Contains(got, "token mints back to") {
		t.Errorf("resolve %q, want the token mints back (it fired as %q)", got, fired[0].Episode.Summary)
	}
}
