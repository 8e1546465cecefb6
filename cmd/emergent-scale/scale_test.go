package main

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/emergent-sh/emergent/config"
)

// TestMain lets the test binary serve as the emergentd worker the harness starts (it runs
// os.Executable() with the job in the environment).
func TestMain(m *testing.M) {
	if job := os.Getenv(workerEnv); job != "" {
		os.Exit(runWorker(job))
	}
	os.Exit(m.Run())
}

// TestScaleShort runs the whole measurement — backfill, real Prometheus, the anchor rules,
// emergentd's bootstrap and cycles, the stats replay, the two restarts — for 50 and 100
// services over two days of data, and checks that it works and that the number of queries per
// cycle does not depend on the number of services. It asserts nothing about time.
func TestScaleShort(t *testing.T) {
	cfg, err := config.LoadFile("../../rules.toml")
	if err != nil {
		t.Fatal(err)
	}
	wantQueries := len(cfg.Queries())
	o := options{
		Groups: []int{50, 100}, Cycles: 3, Interval: 15 * time.Second,
		Anchor: true, AnchorInterval: time.Second,
		Days: 2, HistoryStep: 5 * time.Minute, HistoryPair: time.Minute,
		ConfigFile: "../../rules.toml", WorkDir: t.TempDir(), Idle: time.Second, Stats: true,
		MaxWorkerRSS: 2 << 30, Logf: t.Logf, Restart: true,
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	results, err := measure(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	if len(results) != 2 {
		t.Fatalf("%d results, want 2", len(results))
	}
	for _, r := range results {
		if r.WorkerFailed != "" {
			t.Fatalf("G=%d: emergentd failed: %s", r.Groups, r.WorkerFailed)
		}
		if len(r.Cycles) != o.Cycles {
			t.Fatalf("G=%d: %d cycles measured, want %d", r.Groups, len(r.Cycles), o.Cycles)
		}
		if r.Bootstrap.FailedQueries > 0 {
			t.Errorf("G=%d: %v bootstrap queries failed", r.Groups, r.Bootstrap.FailedQueries)
		}
		// The planted anomalies: one service in a hundred with a per-instance token cache,
		// one flushing Redis on every upload (services 1 and 2 of each hundred).
		wantEach := (r.Groups + 98) / 100
		for i, c := range r.Cycles {
			if c.Queries != wantQueries || c.FailedQueries > 0 {
				t.Errorf("G=%d cycle %d: %d queries (%v failed), want %d (one per distinct query of rules.toml)",
					r.Groups, i+1, c.Queries, c.FailedQueries, wantQueries)
			}
			if c.Series < r.Groups || c.SamplesTouched == 0 {
				t.Errorf("G=%d cycle %d: %d series returned, %d samples touched: Prometheus saw no data",
					r.Groups, i+1, c.Series, c.SamplesTouched)
			}
			if c.FiringByRule["token-minting"] != wantEach || c.FiringByRule["redis-flush-storm"] != wantEach {
				t.Errorf("G=%d cycle %d: firing %v, want %d per rule", r.Groups, i+1, c.FiringByRule, wantEach)
			}
		}
		// A restart, from Prometheus or from the saved state file, keeps every open episode with
		// its start; the one from the state file reads no history.
		for _, x := range []*restartResult{r.Restart, r.Reload} {
			if x == nil || x.Open != 2*wantEach || x.Kept != x.Open {
				t.Errorf("G=%d: restart %+v: want the %d open episodes kept", r.Groups, x, 2*wantEach)
			}
		}
		if r.Reload != nil && r.Restart != nil && r.Reload.Queries >= r.Restart.Queries {
			t.Errorf("G=%d: the restart from the state file asked %d queries, the one from Prometheus %d", r.Groups, r.Reload.Queries, r.Restart.Queries)
		}
		a := r.Anchor
		if a == nil || a.Evaluations < 1 || a.SamplesTouched == 0 || a.Failures > 0 {
			t.Fatalf("G=%d: anchor %+v: want evaluations that touched samples and did not fail", r.Groups, a)
		}
		for _, h := range a.Health {
			if h != "ok" {
				t.Errorf("G=%d: anchor rule health %q (%v)", r.Groups, h, a.Errors)
			}
		}
	}
	// Queries per cycle and per bootstrap must not grow with the fleet: one query per rule
	// answers every group.
	small, large := results[0], results[1]
	if small.Bootstrap.Queries != large.Bootstrap.Queries {
		t.Errorf("bootstrap queries: %d at G=%d, %d at G=%d", small.Bootstrap.Queries, small.Groups, large.Bootstrap.Queries, large.Groups)
	}
	for i := range small.Cycles {
		if small.Cycles[i].Queries != large.Cycles[i].Queries {
			t.Errorf("cycle %d: %d queries at G=%d, %d at G=%d", i+1, small.Cycles[i].Queries, small.Groups, large.Cycles[i].Queries, large.Groups)
		}
	}
	// Series returned do grow with it: the comparison above is not vacuous.
	if small.Cycles[0].Series >= large.Cycles[0].Series {
		t.Errorf("series returned per cycle: %d at G=%d, %d at G=%d: want more for more services",
			small.Cycles[0].Series, small.Groups, large.Cycles[0].Series, large.Groups)
	}
}
