// Command emergent-bench measures emergentd's detection quality: `generate` writes a dataset
// (OpenMetrics for promtool, truth.jsonl, controls.jsonl), `run` generates seeds, backfills a
// real Prometheus, runs emergentd's backtest and the anchor alerting rules against it and
// prints markdown tables of precision, recall, F1, delays and false alerts on controls.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/emergent-sh/emergent/internal/bench"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	app := kingpin.New("emergent-bench", "Detection-quality benchmark of emergentd against the alerting rules teams write today.")
	app.HelpFlag.Short('h')
	repo := app.Flag("repo", "Repository root (rules.toml; NAB data is read from ../shared/data/nab next to it). Found from the working directory by default.").String()

	gen := app.Command("generate", "Write one dataset: openmetrics/*.om (one file per two-hour TSDB block), truth.jsonl, controls.jsonl, dataset.json.")
	genSeed := gen.Flag("seed", "Random seed: the same seed writes the same dataset (relative to --end).").Required().Uint64()
	genOut := gen.Flag("out", "Output directory.").Required().String()
	genServices := gen.Flag("services", "Synthetic services (the scenario mix is scaled to it); NAB services come on top.").Default("64").Int()
	genDays := gen.Flag("days", "Days of data; the first 3/8 (one to three days) are history only.").Default("8").Int()
	genEnd := gen.Flag("end", "Time of the last sample (RFC3339); the most recent Monday 00:00 UTC by default (recent enough for Prometheus's retention, the same all week).").String()
	genNoNAB := gen.Flag("no-nab", "Skip the real-traffic (NAB) track.").Bool()
	genShort := gen.Flag("short", "CI's short form: 2 days, 16 synthetic services, one NAB window and one injected incident per NAB file.").Bool()

	runCmd := app.Command("run", "Generate, backfill a real Prometheus, run emergentd and the anchors, score, print markdown.")
	runSeeds := runCmd.Flag("seeds", "Held-out seeds to score, comma-separated.").Default("11,12,13").String()
	runTune := runCmd.Flag("tune-seed", "Seed the anchors are tuned on (never scored).").Default("7").Uint64()
	runShort := runCmd.Flag("short", "CI's short form (2 days, ~22 services per seed).").Bool()
	runCorpus := runCmd.Flag("corpus", "Data to score on: designed (this repository's scenarios) or fleetsim (internal/fleetsim: generated from a spec of how fleets behave, written without the detector at hand).").Default(bench.CorpusDesigned).Enum(bench.CorpusDesigned, bench.CorpusFleetsim)
	runRules := runCmd.Flag("config.file", "emergentd configuration; the shipped rules.toml by default.").String()
	runWork := runCmd.Flag("workdir", "Directory for datasets and TSDBs (a temporary directory by default).").String()
	runKeep := runCmd.Flag("keep", "Keep datasets and TSDBs after the run (the generated text is removed once backfilled).").Bool()
	runReuse := runCmd.Flag("reuse", "With --keep and --workdir: score a seed again on the dataset and TSDB a kept run of the same seed, corpus, form and end left there, instead of generating it.").Bool()
	runJobs := runCmd.Flag("backfill-jobs", "promtool processes at once.").Default("2").Int()
	runEvidence := runCmd.Flag("evidence", "Also list emergentd's missed incidents, detections slower than 6m (for + 2 intervals of the shipped rules), false episodes and repeated pages.").Bool()
	runRestarts := runCmd.Flag("restart-every", "Also restart emergentd from its own state this often along each scored seed, and compare the restarts' episodes with its own over the next 3h (0: no restarts).").Default("0s").Duration()
	runEnd := runCmd.Flag("end", "Time of the last sample (RFC3339); the most recent Monday 00:00 UTC by default, so runs in the same week measure the same data.").String()

	cmd, err := app.Parse(args)
	if err != nil {
		fmt.Fprintf(os.Stderr, "emergent-bench: %v (try --help)\n", err)
		return 2
	}
	root := *repo
	if root == "" {
		wd, _ := os.Getwd()
		if root, err = bench.RepoRoot(wd); err != nil {
			fmt.Fprintf(os.Stderr, "emergent-bench: %v (pass --repo)\n", err)
			return 2
		}
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	switch cmd {
	case gen.FullCommand():
		opts := bench.FullOptions(*genSeed, bench.NABDir(root))
		if *genShort {
			opts = bench.ShortOptions(*genSeed, bench.NABDir(root))
		} else {
			opts.Services, opts.Days = *genServices, *genDays
		}
		if *genNoNAB {
			opts.NABDir = ""
		}
		if *genEnd != "" {
			if opts.End, err = time.Parse(time.RFC3339, *genEnd); err != nil {
				fmt.Fprintf(os.Stderr, "emergent-bench generate: --end: %v\n", err)
				return 2
			}
		}
		began := time.Now()
		ds, err := bench.Generate(opts, *genOut)
		if err != nil {
			fmt.Fprintf(os.Stderr, "emergent-bench generate: %v\n", err)
			return 1
		}
		fmt.Printf("%s: %d services, %d incidents, %d control events, %d samples (%.0f MB) in %d files, %s\n",
			*genOut, len(ds.Services), len(ds.Incidents), len(ds.Controls), ds.Samples, float64(ds.Bytes)/1e6, len(ds.Files), time.Since(began).Round(time.Millisecond))
		fmt.Printf("backfill: for f in %s/*.om; do promtool tsdb create-blocks-from openmetrics \"$f\" data; done\n", filepath.Join(*genOut, "openmetrics"))
		return 0

	case runCmd.FullCommand():
		var seeds []uint64
		for _, s := range strings.Split(*runSeeds, ",") {
			v, err := strconv.ParseUint(strings.TrimSpace(s), 10, 64)
			if err != nil {
				fmt.Fprintf(os.Stderr, "emergent-bench run: --seeds: %q is not a seed\n", s)
				return 2
			}
			seeds = append(seeds, v)
		}
		var end time.Time
		if *runEnd != "" {
			if end, err = time.Parse(time.RFC3339, *runEnd); err != nil {
				fmt.Fprintf(os.Stderr, "emergent-bench run: --end: %v\n", err)
				return 2
			}
		}
		rules := *runRules
		if rules == "" {
			rules = filepath.Join(root, "rules.toml")
		}
		work := *runWork
		if work == "" {
			if work, err = os.MkdirTemp("", "emergent-bench-"); err != nil {
				fmt.Fprintf(os.Stderr, "emergent-bench run: %v\n", err)
				return 1
			}
			if !*runKeep {
				defer os.RemoveAll(work)
			}
		}
		res, err := bench.Run(ctx, bench.RunOptions{
			Seeds: seeds, TuneSeed: *runTune, Short: *runShort, Corpus: *runCorpus, RulesFile: rules, NABDir: bench.NABDir(root),
			WorkDir: work, Keep: *runKeep, Reuse: *runReuse, BackfillJobs: *runJobs, Logger: logger, End: end, RestartEvery: *runRestarts,
		})
		if err != nil {
			fmt.Fprintf(os.Stderr, "emergent-bench run: %v\n", err)
			return 1
		}
		bench.WriteReport(os.Stdout, res)
		if *runEvidence {
			bench.WriteEvidence(os.Stdout, res, bench.DetectorEmergent)
		}
		bench.WriteRestarts(os.Stdout, res)
		return 0
	}
	return 2
}
