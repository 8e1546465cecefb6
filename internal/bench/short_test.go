package bench

import (
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"
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
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	res, err := Run(ctx, RunOptions{
		Seeds: []uint64{shortSeed}, TuneSeed: shortTuneSeed, Short: true,
		RulesFile: filepath.Join(root, "rules.toml"), NABDir: testNABDir(t),
		WorkDir: t.TempDir(), BackfillJobs: 2, Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	var report strings.Builder
	WriteReport(&report, res)
	WriteEvidence(&report, res, DetectorEmergent)
	t.Logf("benchmark report:\n%s", report.String())

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
