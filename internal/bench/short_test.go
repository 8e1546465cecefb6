package bench

import (
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emergent-sh/emergent/config"
)

// shortSeed and shortTuneSeed are CI's short form: fixed before any result was seen, and the
// first held-out seed of the full benchmark.
const (
	shortSeed     = 11
	shortTuneSeed = 7
)

// TestBenchShort runs the whole benchmark on one small seed (generate, promtool backfill, a real
// Prometheus, emergentd's backtest with the shipped rules.toml, the anchors, scoring) and
// requires that no anchor, tuned on its own seed, has a better F1 than emergentd, that
// emergentd's F1 is at least 0.95 for each kind and that it raises no alert on a control.
func TestBenchShort(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Prometheus and backfills two days of data")
	}
	root, err := RepoRoot(".")
	if err != nil {
		t.Fatal(err)
	}
	res := runShort(t, RunOptions{Seeds: []uint64{shortSeed}, TuneSeed: shortTuneSeed, RulesFile: filepath.Join(root, "rules.toml")})

	// The pipeline ran: every stage saw data.
	run := res.Runs[0]
	kinds := map[string]int{}
	for _, in := range run.Dataset.Incidents {
		kinds[in.Kind]++
	}
	for _, k := range Kinds {
		if kinds[k] == 0 {
			t.Errorf("the dataset has no %s incident", k)
		}
	}
	if len(run.Emergent) == 0 {
		t.Error("emergentd's backtest found no episode at all")
	}
	for i, a := range Anchors(time.Duration(run.Dataset.Step)) {
		if len(run.Values[i].Values) == 0 {
			t.Errorf("anchor %s/%s returned no series", a.Name, a.Kind)
		}
	}
	for _, tu := range res.Tuned {
		if tu.TuneF1 <= 0 {
			t.Errorf("anchor %s/%s tuned to F1 %v on seed %d", tu.Anchor.Name, tu.Anchor.Kind, tu.TuneF1, shortTuneSeed)
		}
	}

	// The claims of issue 4 on the held-out seed. "Beats" is ≥: the tuned static anchor is the
	// same rule as emergentd's bounded token ceiling and flush count (BENCHMARKS.md), so on
	// these incident types it can tie emergentd but must never do better.
	scores := res.PerSeed[shortSeed]
	ours := scores[DetectorEmergent].Overall()
	for _, d := range Detectors()[1:] {
		if theirs := scores[d].Overall(); theirs.F1() > ours.F1() {
			t.Errorf("the %s anchor beats emergentd: overall F1 %.3f > %.3f on seed %d", d, theirs.F1(), ours.F1(), shortSeed)
		}
	}
	for _, k := range Kinds {
		if f1 := scores[DetectorEmergent].Kinds[k].F1(); f1 < 0.95 {
			t.Errorf("emergentd %s F1 %.3f < 0.95 on seed %d", k, f1, shortSeed)
		}
	}
	for c, cs := range scores[DetectorEmergent].Controls {
		if cs.Episodes > 0 {
			t.Errorf("emergentd raised %d false episodes on %s controls on seed %d", cs.Episodes, c, shortSeed)
		}
	}
}

// runShort runs the short form of opts (the shipped rules unless opts says otherwise) and logs
// its report.
func runShort(t *testing.T, opts RunOptions) *Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	opts.Short, opts.NABDir, opts.WorkDir, opts.BackfillJobs = true, testNABDir(t), t.TempDir(), 2
	opts.Logger = slog.New(slog.DiscardHandler)
	res, err := Run(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	var report strings.Builder
	WriteReport(&report, res)
	WriteEvidence(&report, res, DetectorEmergent)
	WriteRestarts(&report, res)
	t.Logf("benchmark report:\n%s", report.String())
	return res
}

// fleetsimShortSeed is CI's short form on the independent corpus: a seed drawn after the
// detector was frozen (BENCHMARKS.md), scored with the anchors tuned on seed 3, on data that
// end at a fixed time so every run measures the same samples.
const fleetsimShortSeed = 21328

var fleetsimShortEnd = time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC)

// TestBenchShortFleetsim runs the short form on internal/fleetsim's corpus, written from a spec
// of how fleets behave without the detector at hand, and fails when a figure BENCHMARKS.md
// reports for it regresses: every flush storm found, overall F1 at least 0.85 (0.909
// measured), and no more false episodes than the tuned static anchor raises plus one. It also
// restarts emergentd from its own state every 6 hours along the seed: each restored restart
// must page the episodes of the run that never stopped, each starting within the rules' for of
// its start (restartTolerance; an end may differ, as the history a restart reads back holds
// steps a live process did not learn from), and page nothing else. At the same points a cold
// start that replays only the groups stirred in its replay window (engine.CheapReplay) must
// find exactly the episodes, starts and ends, of one that replays every group.
func TestBenchShortFleetsim(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Prometheus and backfills two days of data")
	}
	root, err := RepoRoot(".")
	if err != nil {
		t.Fatal(err)
	}
	res := runShort(t, RunOptions{Seeds: []uint64{fleetsimShortSeed}, TuneSeed: 3, Corpus: CorpusFleetsim,
		RulesFile: filepath.Join(root, "rules.toml"), End: fleetsimShortEnd, RestartEvery: 6 * time.Hour})
	scores := res.PerSeed[fleetsimShortSeed]
	if c := res.Runs[0].Restarts; c == nil || c.Restarts == 0 || c.Episodes == 0 {
		t.Errorf("restart check %+v: no restart, or no episode open around one, was compared", c)
	} else if r := c.Restored; r.Paged != c.Episodes || r.NewPages > 0 || r.Paged < c.Carried.Paged {
		t.Errorf("restored restarts paged %d of %d episodes as the run that never stopped, and %d it did not (%d identical; the whole replay paged %d): %q",
			r.Paged, c.Episodes, r.NewPages, r.Same, c.Carried.Paged, r.Diffs)
	}
	if c := res.Runs[0].Restarts; c != nil && (c.ColdEpisodes == 0 || c.Cold.Same != c.ColdEpisodes || c.Cold.Extra > 0) {
		t.Errorf("cold starts replaying the stirred groups alone: %d of the full replay's %d episodes the same, %d more: %q",
			c.Cold.Same, c.ColdEpisodes, c.Cold.Extra, c.Cold.Diffs)
	}
	ours, static := scores[DetectorEmergent], scores[FamilyStatic]
	for _, k := range Kinds {
		if ours.Kinds[k].Incidents == 0 {
			t.Errorf("the dataset has no %s incident", k)
		}
	}
	if storms := ours.Kinds[config.KindFlushStorm]; storms.Recall() < 1 {
		t.Errorf("emergentd found %d of %d flush storms", storms.Detected, storms.Incidents)
	}
	if f1 := ours.Overall().F1(); f1 < 0.85 {
		t.Errorf("emergentd overall F1 %.3f < 0.85", f1)
	}
	if o, s := len(ours.False), len(static.False); o > s+1 {
		t.Errorf("emergentd raised %d false episodes, the static anchor %d", o, s)
	}
}
