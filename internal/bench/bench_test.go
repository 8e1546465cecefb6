package bench

import (
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/emergent-sh/emergent/config"
)

var t0 = time.Date(2026, 1, 5, 12, 0, 0, 0, time.UTC)

func TestRuleEpisodesFollowPrometheusForSemantics(t *testing.T) {
	const step = 30 * time.Second
	nan := math.NaN()
	at := func(i int) time.Time { return t0.Add(time.Duration(i) * step) }
	for _, tc := range []struct {
		name string
		vals []float64
		for_ time.Duration
		want []Episode
	}{
		{"for 0 fires at the first true step, resolves at the first false one",
			[]float64{0, 2, 2, 0, 0}, 0, []Episode{{Start: at(1), End: at(3)}}},
		{"for 1m fires two steps after ActiveAt",
			[]float64{0, 2, 2, 2, 2, 0}, time.Minute, []Episode{{Start: at(3), End: at(5)}}},
		{"a pending alert that goes false is dropped",
			[]float64{2, 2, 0, 2, 2, 2}, time.Minute, []Episode{{Start: at(5)}}},
		{"for not a multiple of the step rounds up",
			[]float64{2, 2, 2, 0}, 45 * time.Second, []Episode{{Start: at(2), End: at(3)}}},
		{"a missing sample is no result: resolves, and a new ActiveAt after it",
			[]float64{2, 2, nan, 2, 2, 2}, 30 * time.Second, []Episode{{Start: at(1), End: at(2)}, {Start: at(4)}}},
		{"the threshold is strict (expr > threshold)",
			[]float64{1, 1, 1}, 0, nil},
		{"+Inf passes (a z-score over a flat hour)",
			[]float64{0, math.Inf(1), 0}, 0, []Episode{{Start: at(1), End: at(2)}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := grid{From: t0, Step: step, N: len(tc.vals)}
			got := ruleEpisodes(runs(tc.vals, 1), g, tc.for_)
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestScoreMatchesKindServiceAndOverlap(t *testing.T) {
	h := time.Hour
	ds := &Dataset{
		Start: t0.Add(-24 * h), EvalFrom: t0, End: t0.Add(24 * h),
		Services: []ServiceInfo{
			{Name: "a", Scenario: ScenarioFragBusy, Kind: config.KindSelfGenerated},
			{Name: "b", Scenario: ScenarioStormHigh, Kind: config.KindFlushStorm},
			{Name: "c", Scenario: ControlSurge},
			{Name: "d", Scenario: ControlSteady},
		},
		Incidents: []Incident{
			{Kind: config.KindSelfGenerated, Service: "a", Start: t0.Add(h), End: t0.Add(2 * h), Scenario: ScenarioFragBusy},
			{Kind: config.KindFlushStorm, Service: "b", Start: t0.Add(3 * h), End: t0.Add(3*h + 20*time.Minute), Scenario: ScenarioStormHigh},
		},
		Controls: []ControlEvent{{Type: ControlSurge, Service: "c", Start: t0.Add(5 * h), End: t0.Add(6 * h)}},
	}
	eps := []Episode{
		{Kind: config.KindSelfGenerated, Service: "a", Start: t0.Add(h + 5*time.Minute), End: t0.Add(h + 30*time.Minute)},
		{Kind: config.KindSelfGenerated, Service: "a", Start: t0.Add(h + 40*time.Minute), End: t0.Add(2 * h)}, // repeat
		// Starts within the tolerance after the storm ended: still the storm's.
		{Kind: config.KindFlushStorm, Service: "b", Start: t0.Add(3*h + 24*time.Minute)},
		{Kind: config.KindFlushStorm, Service: "a", Start: t0.Add(h + 10*time.Minute), End: t0.Add(h + 20*time.Minute)}, // wrong kind
		{Kind: config.KindSelfGenerated, Service: "c", Start: t0.Add(5*h + 10*time.Minute), End: t0.Add(5*h + 20*time.Minute)},
		{Kind: config.KindSelfGenerated, Service: "c", Start: t0.Add(10 * h), End: t0.Add(11 * h)}, // on a control, outside its event
	}
	s := ScoreDataset(ds, "x", eps)
	sg, fs := s.Kinds[config.KindSelfGenerated], s.Kinds[config.KindFlushStorm]
	if sg.Incidents != 1 || sg.Detected != 1 || sg.Episodes != 4 || sg.TruePos != 2 || sg.Duplicates != 1 {
		t.Errorf("self-generated = %+v", *sg)
	}
	if got := sg.Delays; len(got) != 1 || got[0] != 5*time.Minute {
		t.Errorf("delay = %v, want 5m", got)
	}
	if fs.Incidents != 1 || fs.Detected != 1 || fs.Episodes != 2 || fs.TruePos != 1 {
		t.Errorf("flush storm = %+v", *fs)
	}
	if p, r := sg.Precision(), sg.Recall(); p != 0.5 || r != 1 || math.Abs(sg.F1()-2.0/3) > 1e-9 {
		t.Errorf("precision %v recall %v F1 %v", p, r, sg.F1())
	}
	surge := s.Controls[ControlSurge]
	if surge.Services != 1 || surge.Episodes != 2 || surge.DuringEvents != 1 || surge.ServiceDays != 1 {
		t.Errorf("surge controls = %+v", *surge)
	}
	if steady := s.Controls[ControlSteady]; steady.Episodes != 0 || steady.Services != 1 {
		t.Errorf("steady controls = %+v", *steady)
	}
	if len(s.False) != 3 {
		t.Errorf("false episodes = %d, want 3", len(s.False))
	}
	pooled := newScore("x")
	pooled.Add(s)
	pooled.Add(s)
	if o := pooled.Overall(); o.Incidents != 4 || o.Episodes != 12 {
		t.Errorf("pooled overall = %+v", o)
	}
}

func TestEventCounterAppearsAtOneAndVanishesWithRedis(t *testing.T) {
	minute := func(m int) time.Time { return t0.Add(time.Duration(m) * time.Minute) }
	events := []time.Time{minute(2), minute(3), minute(8)}
	resets := []time.Time{minute(5)}
	c := eventCounter(events, resets, func(time.Time) bool { return true })
	var got []float64
	for m := range 10 {
		v, ok := c(m, minute(m))
		if !ok {
			v = -1
		}
		got = append(got, v)
	}
	want := []float64{-1, -1, 1, 2, 2, -1, -1, -1, 1, 1}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("flush counter = %v, want %v (-1: no series)", got, want)
	}
}

func TestCounterCountsThroughGapsAndResets(t *testing.T) {
	const step = 30 * time.Second
	at := func(i int) time.Time { return t0.Add(time.Duration(i) * step) }
	gap := span{at(3), at(5)}
	r := rand.New(rand.NewPCG(1, 2))
	// 200 per second: Poisson noise is small against the expectations below.
	c := counterSampler(r, step, func(time.Time) float64 { return 200 }, func(t time.Time) bool { return !gap.has(t) }, []time.Time{at(7)})
	var vals []float64
	var present []bool
	for i := range 9 {
		v, ok := c(i, at(i))
		vals, present = append(vals, v), append(present, ok)
	}
	if present[3] || present[4] || !present[5] {
		t.Errorf("presence %v: want a gap at steps 3 and 4 only", present)
	}
	if d := vals[5] - vals[2]; math.Abs(d-3*6000) > 600 {
		t.Errorf("the counter advanced %v across the gap, want ~18000 (it counts while unscraped)", d)
	}
	if vals[7] > 600 || vals[8] < 5000 {
		t.Errorf("after the reset at step 7: %v, %v; want ~0 then ~6000", vals[7], vals[8])
	}
}

func TestDefaultEndIsTheLastMonday(t *testing.T) {
	for _, tc := range []struct{ now, want string }{
		{"2026-11-23T21:30:00Z", "2026-11-23T00:00:00Z"}, // a Monday
		{"2026-11-22T23:59:59Z", "2026-11-16T00:00:00Z"}, // a Sunday
		{"2026-11-25T03:00:00+05:00", "2026-11-23T00:00:00Z"},
	} {
		now, _ := time.Parse(time.RFC3339, tc.now)
		if got := DefaultEnd(now).Format(time.RFC3339); got != tc.want {
			t.Errorf("DefaultEnd(%s) = %s, want %s", tc.now, got, tc.want)
		}
	}
}

func TestMixKeepsEveryScenario(t *testing.T) {
	for _, n := range []int{14, 16, 20, 64, 100} {
		got := mix(n)
		if len(got) != n {
			t.Errorf("mix(%d) has %d services", n, len(got))
		}
		seen := map[string]bool{}
		for _, s := range got {
			seen[s] = true
		}
		if len(seen) != len(fullMix) {
			t.Errorf("mix(%d) covers %d of %d scenarios", n, len(seen), len(fullMix))
		}
	}
}

func TestGenerateIsDeterministic(t *testing.T) {
	nab := testNABDir(t)
	opts := ShortOptions(3, nab)
	opts.Services, opts.End = 14, t0
	a, err := Generate(opts, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	dirB := t.TempDir()
	b, err := Generate(opts, dirB)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(a.Incidents, b.Incidents) || a.Samples != b.Samples || a.Bytes != b.Bytes {
		t.Fatalf("same seed, different datasets: %d vs %d samples", a.Samples, b.Samples)
	}
	kinds := map[string]int{}
	for _, in := range a.Incidents {
		kinds[in.Kind]++
		if in.Start.Before(a.EvalFrom) || in.End.After(a.End) || !in.End.After(in.Start) {
			t.Errorf("incident outside the scored range or empty: %+v", in)
		}
	}
	if kinds[config.KindSelfGenerated] == 0 || kinds[config.KindFlushStorm] == 0 {
		t.Errorf("incidents by kind: %v", kinds)
	}
	back, err := LoadDataset(dirB)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back.Incidents, b.Incidents) || len(back.Services) != len(b.Services) || !back.EvalFrom.Equal(b.EvalFrom) {
		t.Errorf("dataset does not read back as written")
	}
	for _, f := range b.Files {
		data, err := os.ReadFile(filepath.Join(dirB, f))
		if err != nil {
			t.Fatal(err)
		}
		if n := len(data); n < 7 || string(data[n-6:]) != "# EOF\n" {
			t.Errorf("%s does not end with # EOF", f)
		}
	}
}

// testNABDir returns the NAB data next to the repository; the benchmark needs it.
func testNABDir(t *testing.T) string {
	t.Helper()
	root, err := RepoRoot(".")
	if err != nil {
		t.Fatal(err)
	}
	dir := NABDir(root)
	if _, err := os.Stat(filepath.Join(dir, "combined_windows.json")); err != nil {
		t.Fatalf("NAB data missing: %v (the benchmark reads ../shared/data/nab next to the repository)", err)
	}
	return dir
}
