// Command emergent-scale measures what emergentd costs at scale, and what it costs Prometheus,
// against Prometheus's own rule manager running equivalent static rules.
//
// With --synthetic it measures emergentd against promsynth instead (internal/promsynth: the
// same fleet, answered as the configured queries' results as they are asked), for fleets too
// large to backfill; see synthetic.go.
//
// For each fleet size G it writes G synthetic services with the default signals of rules.toml
// (8 series each) as OpenMetrics, backfills a real Prometheus (the Debian build, on
// 127.0.0.1) with promtool, then:
//
//  1. measures Prometheus idle;
//  2. loads static alerting rules equivalent to rules.toml into Prometheus and lets its rule
//     manager evaluate them --cycles times at the wall clock (the anchor);
//  3. runs emergentd's evaluation (the daemon's calls, in a worker process of its own) on a
//     simulated clock: the history bootstrap, then --cycles evaluation cycles, one step each;
//  4. replays every query both made with stats=all to count the samples Prometheus touched.
//
// Everything listens on 127.0.0.1; every process it starts is stopped by its PID. See
// BENCHMARKS.md ("Performance and scale") for results and the reasoning behind the data layout.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/alecthomas/kingpin/v2"
)

func main() {
	if job := os.Getenv(workerEnv); job != "" {
		os.Exit(runWorker(job))
	}
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	app := kingpin.New("emergent-scale", "Measure emergentd's cost at scale against a real backfilled Prometheus and its rule manager.")
	groups := app.Flag("groups", "Fleet sizes (services), comma-separated.").Default("100,1000,10000").String()
	cycles := app.Flag("cycles", "Evaluation cycles measured, for emergentd and for the anchor rules.").Default("20").Int()
	interval := app.Flag("interval", "emergentd's evaluation_interval (written into a copy of --config.file).").Default("15s").Duration()
	anchor := app.Flag("anchor", "Measure Prometheus's rule manager on equivalent static rules (runs at the wall clock).").Default("true").Bool()
	anchorInterval := app.Flag("anchor-interval", "Evaluation interval of the anchor rules (default: --interval).").Duration()
	days := app.Flag("days", "Days of data before the simulated now.").Default("8").Int()
	historyStep := app.Flag("history-step", "Resolution of the data before the replay window (0: the configuration's baseline_step; it must divide it).").Default("0s").Duration()
	historyPair := app.Flag("history-pair", "Each history point gets a second sample this much earlier, so rate(...[2m]) has two samples (0: one sample).").Default("60s").Duration()
	full := app.Flag("full-resolution", "Write the whole history at 15s, as a real scrape would (slow to backfill).").Bool()
	future := app.Flag("future", "How far past the start the data reaches, for the anchor at the wall clock (0: estimated).").Duration()
	configFile := app.Flag("config.file", "emergentd configuration to measure.").Default("rules.toml").String()
	configSet := app.Flag("config.set", "Override a top-level key of the configuration copy, e.g. timeout=120s or history=1d (repeatable; reported with the results).").Strings()
	workDir := app.Flag("work-dir", "Where TSDBs and OpenMetrics windows are written (needs ~70 B per sample while backfilling).").Default(os.TempDir()).String()
	keep := app.Flag("keep", "Keep the work directories.").Bool()
	idle := app.Flag("idle", "How long Prometheus's idle CPU is measured.").Default("20s").Duration()
	restart := app.Flag("restart", "After the cycles, measure a second process's start-up with the state the first left (a restart with state in Prometheus).").Default("true").Bool()
	stats := app.Flag("stats", "Replay every query with stats=all to count samples touched.").Default("true").Bool()
	reuse := app.Flag("reuse", "Measure again over a fleet directory kept by --keep (one --groups value), without backfilling.").String()
	maxRSS := app.Flag("max-worker-rss", "Kill the emergentd worker (by its PID) past this resident size, in MiB (0: no limit).").Default("8192").Int64()
	memLimit := app.Flag("worker-memory-limit", "Run the emergentd worker as under a container memory limit of this many MiB: GOMEMLIMIT is set to emergentd's --auto-gomemlimit.ratio default of it, as emergentd sets it from its cgroup (0: no limit, the Go default).").Default("0").Int64()
	profileDir := app.Flag("profile-dir", "Write CPU and allocation profiles of emergentd's bootstrap and cycles here.").String()
	synthetic := app.Flag("synthetic", "Measure against promsynth (a query API in this process answering the fleet's queries as they are asked) instead of a backfilled Prometheus: no backfill, anchor or stats pass; the restart is from the state file.").Bool()
	jsonOut := app.Flag("json", "Write every measurement to this file as JSON.").String()
	if _, err := app.Parse(args); err != nil {
		fmt.Fprintf(os.Stderr, "emergent-scale: %v\n", err)
		return 2
	}
	o := options{
		Cycles: *cycles, Interval: *interval, Anchor: *anchor, AnchorInterval: *anchorInterval, Days: *days,
		HistoryStep: *historyStep, HistoryPair: *historyPair, FullResolution: *full, Future: *future,
		ConfigFile: *configFile, ConfigSet: *configSet, WorkDir: *workDir, Keep: *keep, Idle: *idle, Stats: *stats,
		Reuse: *reuse, Synthetic: *synthetic, MaxWorkerRSS: *maxRSS << 20, WorkerMemoryLimit: *memLimit << 20, ProfileDir: *profileDir, Restart: *restart,
		Logf: func(format string, args ...any) {
			fmt.Fprintf(os.Stderr, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
		},
	}
	if o.ProfileDir != "" {
		abs, err := filepath.Abs(o.ProfileDir)
		if err == nil {
			err = os.MkdirAll(abs, 0o755)
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "emergent-scale: --profile-dir: %v\n", err)
			return 2
		}
		o.ProfileDir = abs
	}
	if o.AnchorInterval == 0 {
		o.AnchorInterval = o.Interval
	}
	for _, s := range strings.Split(*groups, ",") {
		g, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || g <= 0 {
			fmt.Fprintf(os.Stderr, "emergent-scale: bad --groups value %q\n", s)
			return 2
		}
		o.Groups = append(o.Groups, g)
	}
	if o.Reuse != "" && len(o.Groups) != 1 {
		fmt.Fprintln(os.Stderr, "emergent-scale: --reuse measures one fleet: give one --groups value")
		return 2
	}
	if o.Synthetic {
		if o.Reuse != "" {
			fmt.Fprintln(os.Stderr, "emergent-scale: --reuse measures a kept backfill; --synthetic needs none")
			return 2
		}
		o.Anchor, o.Stats = false, false // promsynth runs no rules and touches no samples
	}
	if o.Cycles < 1 {
		fmt.Fprintln(os.Stderr, "emergent-scale: --cycles must be at least 1")
		return 2
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	results, err := measure(ctx, o)
	if *jsonOut != "" {
		if b, jerr := json.MarshalIndent(results, "", "  "); jerr == nil {
			if werr := os.WriteFile(*jsonOut, b, 0o644); werr != nil {
				fmt.Fprintf(os.Stderr, "emergent-scale: %v\n", werr)
			}
		}
	}
	writeReport(os.Stdout, o, results)
	if err != nil {
		fmt.Fprintf(os.Stderr, "emergent-scale: %v\n", err)
		return 1
	}
	return 0
}

// measure runs every fleet size in turn.
func measure(ctx context.Context, o options) ([]*scaleResult, error) {
	var out []*scaleResult
	for _, g := range o.Groups {
		res, err := runScale(ctx, o, g)
		if res != nil {
			out = append(out, res)
		}
		if err != nil {
			return out, fmt.Errorf("groups=%d: %w", g, err)
		}
	}
	return out, nil
}
