package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/emergent-sh/emergent/config"
	"github.com/emergent-sh/emergent/daemon"
	"github.com/emergent-sh/emergent/internal/fleetsim"
	"github.com/emergent-sh/emergent/internal/stack"
	"github.com/emergent-sh/emergent/sources"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
)

// DetectorEmergent names emergentd's results in the tables.
const DetectorEmergent = "emergentd"

// RunOptions configure `emergent-bench run`.
type RunOptions struct {
	Seeds    []uint64
	TuneSeed uint64
	// Short runs CI's short form (ShortOptions) instead of the full one.
	Short bool
	// Corpus says which generator makes the data: CorpusDesigned (this package's scenarios,
	// written alongside the detector) or CorpusFleetsim (internal/fleetsim, written from a spec
	// of how fleets behave without the detector at hand). Empty means CorpusDesigned.
	Corpus string
	// RulesFile is emergentd's configuration (the shipped rules.toml).
	RulesFile string
	// NABDir holds the NAB series (../shared/data/nab from the repository).
	NABDir string
	// WorkDir receives datasets and TSDBs (a directory per seed, removed after unless Keep).
	WorkDir string
	Keep    bool
	// Reuse takes a seed's dataset and TSDB from WorkDir when a kept run left them (same seed,
	// corpus, form and end), so a detector change is scored again without regenerating.
	Reuse bool
	// BackfillJobs bounds the promtool processes run at once.
	BackfillJobs int
	// End is the end of the data; zero means DefaultEnd.
	End time.Time
	// RestartEvery, if set, also restarts emergentd from its own state this often along each
	// scored seed and compares the restarts' episodes with its own (RestartCheck).
	RestartEvery time.Duration
	Logger       *slog.Logger
}

// Timings are the wall-clock durations of one seed's stages.
type Timings struct {
	Generate, Backfill, PrometheusStart, Backtest, Anchors time.Duration
}

// SeedRun is everything measured on one seed.
type SeedRun struct {
	Seed     uint64
	Dataset  *Dataset
	Emergent []Episode
	// Anchor values, in Anchors() order.
	Values  []AnchorValues
	Timings Timings
	// Restarts is the restart check (RunOptions.RestartEvery); nil when not run.
	Restarts *RestartCheck
}

// Result is a whole benchmark run.
type Result struct {
	Options RunOptions
	Tune    *SeedRun
	Tuned   []Tuned
	Runs    []*SeedRun
	// Pooled are the scores over every scored seed, by detector; PerSeed by seed then detector.
	Pooled  map[string]*Score
	PerSeed map[uint64]map[string]*Score
	Machine Machine
	Total   time.Duration
}

// Detectors lists the detectors in table order.
func Detectors() []string {
	return []string{DetectorEmergent, FamilyStatic, FamilyRatio, FamilyZScore}
}

// Machine describes where the benchmark ran.
type Machine struct {
	CPUs       int
	GoVersion  string
	Prometheus string
}

// Run generates each seed, backfills a real Prometheus, runs emergentd's backtest and the
// anchors against it, tunes the anchors on the tuning seed and scores the other seeds.
func Run(ctx context.Context, opts RunOptions) (*Result, error) {
	began := time.Now()
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.BackfillJobs <= 0 {
		opts.BackfillJobs = 1
	}
	if opts.End.IsZero() {
		opts.End = DefaultEnd(time.Now())
	}
	for _, s := range opts.Seeds {
		if s == opts.TuneSeed {
			return nil, fmt.Errorf("bench: seed %d is the tuning seed; score only held-out seeds", s)
		}
	}
	if _, err := os.Stat(opts.NABDir); err != nil {
		return nil, fmt.Errorf("bench: %w: %s (expected ../shared/data/nab next to the repository)", ErrNoNAB, opts.NABDir)
	}
	res := &Result{Options: opts, Pooled: map[string]*Score{}, PerSeed: map[uint64]map[string]*Score{}, Machine: machine()}
	var err error
	if res.Tune, err = runSeed(ctx, opts, opts.TuneSeed); err != nil {
		return nil, fmt.Errorf("tuning seed %d: %w", opts.TuneSeed, err)
	}
	for i, a := range Anchors(time.Duration(res.Tune.Dataset.Step)) {
		t := tune(a, res.Tune.Values[i], res.Tune.Dataset)
		opts.Logger.Info("anchor tuned", "anchor", a.Name, "kind", a.Kind, "threshold", t.Params.Threshold, "for", t.Params.For, "f1", t.TuneF1)
		res.Tuned = append(res.Tuned, t)
	}
	for _, d := range Detectors() {
		res.Pooled[d] = newScore(d)
	}
	for _, seed := range opts.Seeds {
		run, err := runSeed(ctx, opts, seed)
		if err != nil {
			return nil, fmt.Errorf("seed %d: %w", seed, err)
		}
		res.Runs = append(res.Runs, run)
		per := map[string]*Score{}
		per[DetectorEmergent] = ScoreDataset(run.Dataset, DetectorEmergent, run.Emergent)
		byFamily := map[string][]Episode{}
		for i, t := range res.Tuned {
			byFamily[t.Anchor.Family] = append(byFamily[t.Anchor.Family], anchorEpisodes(t.Anchor, run.Values[i], t.Params, run.Dataset.EvalFrom)...)
		}
		for _, f := range []string{FamilyStatic, FamilyRatio, FamilyZScore} {
			per[f] = ScoreDataset(run.Dataset, f, byFamily[f])
		}
		for d, s := range per {
			res.Pooled[d].Add(s)
		}
		res.PerSeed[seed] = per
	}
	res.Total = time.Since(began)
	return res, nil
}

// Corpora the benchmark can score on.
const (
	CorpusDesigned = "designed"
	CorpusFleetsim = "fleetsim"
)

// Sizes of the fleetsim corpus: the short form is CI's; the full form scores two days per seed.
const (
	fleetsimShortDays, fleetsimShortServices = 2, 24
	fleetsimFullDays, fleetsimFullServices   = 3, 30
)

// generate writes seed's dataset of the chosen corpus into dir and reads it back.
func generate(opts RunOptions, seed uint64, dir string) (*Dataset, error) {
	switch opts.Corpus {
	case "", CorpusDesigned:
		gopts := FullOptions(seed, opts.NABDir)
		if opts.Short {
			gopts = ShortOptions(seed, opts.NABDir)
		}
		gopts.End = opts.End
		return Generate(gopts, dir)
	case CorpusFleetsim:
		fo := fleetsim.Options{Seed: seed, Days: fleetsimFullDays, Services: fleetsimFullServices, End: opts.End, NABDir: opts.NABDir}
		if opts.Short {
			fo.Days, fo.Services = fleetsimShortDays, fleetsimShortServices
		}
		if err := fleetsim.Generate(fo, dir); err != nil {
			return nil, err
		}
		return LoadDataset(dir)
	}
	return nil, fmt.Errorf("bench: unknown corpus %q (want %s or %s)", opts.Corpus, CorpusDesigned, CorpusFleetsim)
}

// ErrNoNAB reports that the NAB data is not where the benchmark reads it.
var ErrNoNAB = errors.New("NAB data not found")

func runSeed(ctx context.Context, opts RunOptions, seed uint64) (*SeedRun, error) {
	log := opts.Logger.With("seed", seed)
	run := &SeedRun{Seed: seed}
	dir, reused, err := seedDir(opts, seed)
	if err != nil {
		return nil, err
	}
	if !opts.Keep {
		defer os.RemoveAll(dir)
	}
	dsDir := filepath.Join(dir, "dataset")
	promDir := filepath.Join(dir, "prometheus")
	if reused {
		if run.Dataset, err = LoadDataset(dsDir); err != nil {
			return nil, fmt.Errorf("reusing %s: %w", dir, err)
		}
		log.Info("reused a kept dataset and TSDB", "dir", dir)
	} else {
		t0 := time.Now()
		if run.Dataset, err = generate(opts, seed, dsDir); err != nil {
			return nil, err
		}
		run.Timings.Generate = time.Since(t0)
		ds := run.Dataset
		log.Info("generated", "services", len(ds.Services), "incidents", len(ds.Incidents), "samples", ds.Samples, "files", len(ds.Files), "took", run.Timings.Generate.Round(time.Millisecond))

		t0 = time.Now()
		if err := backfill(ctx, dsDir, ds.Files, filepath.Join(promDir, "data"), opts.BackfillJobs); err != nil {
			return nil, err
		}
		run.Timings.Backfill = time.Since(t0)
		log.Info("backfilled", "took", run.Timings.Backfill.Round(time.Millisecond))
		// The TSDB holds everything now; the text is most of the disk the run uses.
		os.RemoveAll(filepath.Join(dsDir, "openmetrics"))
		if opts.Keep {
			if err := os.WriteFile(filepath.Join(dir, backfilledMarker), nil, 0o644); err != nil {
				return nil, err
			}
		}
	}
	ds := run.Dataset

	t0 := time.Now()
	prom, err := stack.StartPrometheus(ctx, stack.PrometheusOptions{
		Dir: promDir,
		// Backfilled two-hour blocks stay as they are: compacting 96 of them would compete with
		// the queries being measured. Queries read every block either way.
		ExtraArgs:    []string{"--storage.tsdb.max-block-duration=2h"},
		ReadyTimeout: 3 * time.Minute,
	})
	if err != nil {
		return nil, err
	}
	defer prom.Stop()
	run.Timings.PrometheusStart = time.Since(t0)

	t0 = time.Now()
	cfg, err := daemon.LoadConfig(opts.RulesFile, prom.URL, "")
	if err != nil {
		return nil, err
	}
	if got := time.Duration(cfg.Global.EvaluationInterval); got != time.Duration(ds.Step) {
		return nil, fmt.Errorf("%s: evaluation_interval %s differs from the data's step %s", opts.RulesFile, got, time.Duration(ds.Step))
	}
	quiet := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	src, err := sources.NewPrometheus(cfg.Prometheus, quiet, prometheus.NewRegistry())
	if err != nil {
		return nil, err
	}
	bt, err := daemon.Backtest(ctx, cfg, src, ds.EvalFrom, ds.End, quiet)
	if err != nil {
		return nil, fmt.Errorf("backtest: %w", err)
	}
	for _, e := range bt {
		ep := Episode{Detector: DetectorEmergent, Kind: e.Kind, Service: e.Labels["service"], Start: e.Start, Summary: e.Summary}
		if e.End != nil {
			ep.End = *e.End
		}
		run.Emergent = append(run.Emergent, ep)
	}
	run.Timings.Backtest = time.Since(t0)
	log.Info("backtest done", "episodes", len(bt), "took", run.Timings.Backtest.Round(time.Millisecond))
	if opts.RestartEvery > 0 && seed != opts.TuneSeed {
		t0 = time.Now()
		if run.Restarts, err = checkRestarts(ctx, cfg, src, ds.EvalFrom, ds.End, opts.RestartEvery, restartWindow, quiet); err != nil {
			return nil, fmt.Errorf("restart check: %w", err)
		}
		log.Info("restarts checked", "restarts", run.Restarts.Restarts, "episodes", run.Restarts.Episodes,
			"restored_paged", run.Restarts.Restored.Paged, "carried_paged", run.Restarts.Carried.Paged, "took", time.Since(t0).Round(time.Millisecond))
	}

	t0 = time.Now()
	// The anchors' queries are heavier (subqueries over days): a longer timeout, two at a time.
	asrc, err := sources.NewPrometheus(config.Prometheus{URL: prom.URL, Timeout: model.Duration(2 * time.Minute), MaxConcurrentQueries: 2}, quiet, nil)
	if err != nil {
		return nil, err
	}
	anchors := Anchors(time.Duration(ds.Step))
	run.Values = make([]AnchorValues, len(anchors))
	errs := make([]error, len(anchors))
	var wg sync.WaitGroup
	// Evaluated from the same replay window emergentd's backtest starts with, so a `for` that
	// began before the scored range counts from where it began.
	from := ds.EvalFrom.Add(-time.Duration(cfg.Global.Replay))
	for i, a := range anchors {
		wg.Add(1)
		go func() {
			defer wg.Done()
			run.Values[i], errs[i] = queryValues(ctx, asrc, a.Expr, from, ds.End, time.Duration(ds.Step))
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	run.Timings.Anchors = time.Since(t0)
	log.Info("anchors queried", "took", run.Timings.Anchors.Round(time.Millisecond))
	return run, nil
}

// backfilledMarker is written into a kept seed's directory once its TSDB is complete: a run
// stopped during the backfill leaves nothing Reuse would take.
const backfilledMarker = "backfilled"

// seedDir returns the directory seed's run works in and whether it holds a kept, complete run
// to reuse. Kept runs are named by what makes their data (seed, corpus, form, end), so a reuse
// never takes data generated differently.
func seedDir(opts RunOptions, seed uint64) (dir string, reused bool, err error) {
	if err := os.MkdirAll(opts.WorkDir, 0o755); err != nil {
		return "", false, err
	}
	if !opts.Keep {
		dir, err := os.MkdirTemp(opts.WorkDir, fmt.Sprintf("seed-%d-", seed))
		return dir, false, err
	}
	corpus, form := opts.Corpus, "full"
	if corpus == "" {
		corpus = CorpusDesigned
	}
	if opts.Short {
		form = "short"
	}
	dir = filepath.Join(opts.WorkDir, fmt.Sprintf("seed-%d-%s-%s-%d", seed, corpus, form, opts.End.Unix()))
	if _, err := os.Stat(filepath.Join(dir, backfilledMarker)); err == nil && opts.Reuse {
		return dir, true, nil
	}
	// Whatever is there is incomplete or not wanted: start afresh.
	if err := os.RemoveAll(dir); err != nil {
		return "", false, err
	}
	return dir, false, os.MkdirAll(dir, 0o755)
}

// backfill imports every file with promtool, at most jobs at a time.
func backfill(ctx context.Context, dsDir string, files []string, dataDir string, jobs int) error {
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return err
	}
	sem := make(chan struct{}, jobs)
	errs := make([]error, len(files))
	var wg sync.WaitGroup
	for i, f := range files {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			errs[i] = stack.Backfill(ctx, filepath.Join(dsDir, f), dataDir)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func machine() Machine {
	m := Machine{CPUs: runtime.NumCPU(), GoVersion: runtime.Version()}
	if out, err := exec.Command("prometheus", "--version").CombinedOutput(); err == nil {
		sc := bufio.NewScanner(strings.NewReader(string(out)))
		if sc.Scan() {
			m.Prometheus = strings.TrimSpace(sc.Text())
		}
	}
	return m
}
