package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/emergent-sh/emergent/config"
	"github.com/emergent-sh/emergent/internal/stack"
	"github.com/prometheus/common/model"
)

// options are the command's flags.
type options struct {
	Groups         []int
	Cycles         int
	Interval       time.Duration // emergentd's evaluation_interval
	Anchor         bool
	AnchorInterval time.Duration // the static rules' evaluation interval
	Days           int
	HistoryStep    time.Duration
	HistoryPair    time.Duration
	FullResolution bool
	Future         time.Duration // 0: estimated from the backfill size
	ConfigFile     string
	ConfigSet      []string // key=value overrides of the configuration copy
	WorkDir        string
	Keep           bool
	Idle           time.Duration
	Stats          bool
	Reuse          string // a directory kept by --keep: measure again without backfilling
	MaxWorkerRSS   int64  // the worker is killed (by its PID) past this resident size
	// WorkerMemoryLimit, if positive, is a container memory limit the worker runs as if under:
	// it sets GOMEMLIMIT to daemon.MemoryLimitRatio of it, as emergentd does from its cgroup.
	WorkerMemoryLimit int64
	Restart           bool   // measure a restart with the state the first worker left
	ProfileDir        string // CPU and allocation profiles of the worker's bootstrap and cycles
	Synthetic         bool   // measure against promsynth instead of a backfilled Prometheus
	Logf              func(format string, args ...any)
}

// scaleResult is everything measured for one fleet size.
type scaleResult struct {
	Groups      int           `json:"groups"`
	Series      int           `json:"series"`
	Fleet       fleetInfo     `json:"fleet"`
	Backfill    backfillStats `json:"backfill"`
	IdlePromCPU float64       `json:"prometheus_idle_cpu_seconds_per_second"`
	Bootstrap   cycleResult   `json:"bootstrap"`
	Cycles      []cycleResult `json:"cycles"`
	WorkerMem   memStatus     `json:"worker_mem"`
	HeapAfterGC uint64        `json:"worker_heap_after_gc_bytes"`
	Anchor      *anchorResult `json:"anchor,omitempty"`
	// Restart is a second process's start-up, a step after the first one's last cycle, with
	// the state the first left (what it exports and a restart reads back from Prometheus).
	Restart *restartResult `json:"restart,omitempty"`
	// Reload is the same restart from the state file the first process saved at its last
	// cycle (emergentd's --storage.path), with its size and how long saving took.
	Reload        *restartResult `json:"reload,omitempty"`
	StateBytes    int64          `json:"state_bytes,omitempty"`
	StateSaveSecs float64        `json:"state_save_seconds,omitempty"`
	WorkerFailed  string         `json:"worker_error,omitempty"`
	ConfigSet     []string       `json:"config_set,omitempty"`
	// WorkerMemoryLimit is --worker-memory-limit in bytes: GOMEMLIMIT was
	// daemon.MemoryLimitRatio of it (0: no limit).
	WorkerMemoryLimit int64 `json:"worker_memory_limit_bytes,omitempty"`
	// Backend is "promsynth" in the synthetic mode (empty: a backfilled Prometheus); then the
	// Prometheus CPU figures are promsynth's (the harness process's), and ServedQueries and
	// ServedSamples count what it answered.
	Backend       string `json:"backend,omitempty"`
	ServedQueries int64  `json:"served_queries,omitempty"`
	ServedSamples int64  `json:"served_samples,omitempty"`
	// HeapAfterBootstrap is the worker's heap after the bootstrap and a collection: the state
	// a start-up leaves, whose share per group is the bytes per group reported.
	HeapAfterBootstrap uint64 `json:"worker_heap_after_bootstrap_bytes,omitempty"`
	// StatsDone is set once every query of the bootstrap and the cycles was replayed with
	// stats=all; samples touched are partial (or zero) otherwise.
	StatsDone bool `json:"stats_done"`
}

type fleetInfo struct {
	Start        time.Time `json:"start"`
	Recent       time.Time `json:"recent"`
	End          time.Time `json:"end"`
	HistoryStep  string    `json:"history_step"`
	HistoryPair  string    `json:"history_pair"`
	RecentStep   string    `json:"recent_step"`
	Simulated    time.Time `json:"simulated_now"`
	AnomalyStart time.Time `json:"anomaly_start"`
}

// restartResult is a restart's start-up and whether it kept the episodes the first process had.
type restartResult struct {
	cycleResult
	PeakRSS int64 `json:"peak_rss_bytes"`
	// Open and Kept count the first process's open episodes and those the restart has open
	// with the same start after its first cycle.
	Open int `json:"open_episodes"`
	Kept int `json:"kept_episodes"`
}

// cycleResult is one emergentd phase (the bootstrap or one cycle) as the worker and
// Prometheus saw it.
type cycleResult struct {
	stepReport
	PromCPU        float64 `json:"prometheus_cpu_seconds"`
	PromCPUNet     float64 `json:"prometheus_cpu_seconds_net_of_idle"`
	SamplesTouched int64   `json:"samples_touched"`                     // totalQueryableSamples, replayed with stats=all
	PromSettle     float64 `json:"prometheus_settle_seconds,omitempty"` // bootstrap: until Prometheus was idle again
}

// settle waits (up to two minutes) until Prometheus's CPU use falls back near idle, and
// returns the CPU seconds it used meanwhile and how long that took.
func settle(ctx context.Context, b backend, idle float64) (float64, time.Duration) {
	began := time.Now()
	c0, err := b.CPU()
	if err != nil {
		return 0, 0
	}
	last := c0
	for time.Since(began) < 2*time.Minute {
		select {
		case <-ctx.Done():
			return last - c0, time.Since(began)
		case <-time.After(2 * time.Second):
		}
		c, err := b.CPU()
		if err != nil {
			break
		}
		busy := (c - last) / 2
		last = c
		if busy < idle+0.02 {
			break
		}
	}
	return last - c0, time.Since(began)
}

// anchorResult is Prometheus's rule manager evaluating the static rules.
type anchorResult struct {
	Interval        float64  `json:"interval_seconds"`
	Evaluations     float64  `json:"evaluations"` // rule group iterations measured
	Wall            float64  `json:"wall_seconds"`
	PromCPU         float64  `json:"prometheus_cpu_seconds"`
	PromCPUNet      float64  `json:"prometheus_cpu_seconds_net_of_idle"`
	RuleEvalSeconds float64  `json:"rule_evaluation_seconds"` // prometheus_rule_evaluation_duration_seconds_sum delta
	RuleEvals       float64  `json:"rule_evaluations"`        // ... _count delta
	GroupLast       float64  `json:"group_last_duration_seconds"`
	Failures        float64  `json:"rule_evaluation_failures"`
	SamplesTouched  int64    `json:"samples_touched"` // over the measured evaluations, replayed with stats=all
	SeriesReturned  int      `json:"series_returned"`
	Health          []string `json:"health"`
	Errors          []string `json:"errors,omitempty"`
}

// PerEval returns the Prometheus CPU seconds (net of idle) of one rule group evaluation.
func (a *anchorResult) PerEval() float64 { return a.PromCPUNet / a.Evaluations }

// SamplesPerEval returns the samples touched by one rule group evaluation.
func (a *anchorResult) SamplesPerEval() float64 { return float64(a.SamplesTouched) / a.Evaluations }

// evaluationIntervalLine matches the global evaluation_interval of a configuration file.
var evaluationIntervalLine = regexp.MustCompile(`(?m)^evaluation_interval\s*=.*$`)

// writeConfig copies the shipped configuration with evaluation_interval set and the --config.set
// overrides applied, and checks it.
func writeConfig(src, dst string, interval time.Duration, overrides []string) (*config.Config, error) {
	data, err := os.ReadFile(src)
	if err != nil {
		return nil, err
	}
	if !evaluationIntervalLine.Match(data) {
		return nil, fmt.Errorf("%s: no evaluation_interval line to set", src)
	}
	data = evaluationIntervalLine.ReplaceAll(data, []byte(fmt.Sprintf("evaluation_interval = %q", model.Duration(interval))))
	for _, kv := range overrides {
		if data, err = override(data, kv); err != nil {
			return nil, fmt.Errorf("--config.set %s: %w", kv, err)
		}
	}
	if err := os.WriteFile(dst, data, 0o644); err != nil {
		return nil, err
	}
	return config.LoadFile(dst)
}

// override sets the first top-level `key = ...` line of a configuration file (a key of
// [global] or [prometheus], e.g. timeout=120s or history=1d). Numbers and booleans are written
// as they are, anything else as a quoted string.
func override(data []byte, kv string) ([]byte, error) {
	key, value, ok := strings.Cut(kv, "=")
	key, value = strings.TrimSpace(key), strings.TrimSpace(value)
	if !ok || key == "" || value == "" {
		return nil, fmt.Errorf("want key=value")
	}
	line := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(key) + `\s*=.*$`)
	loc := line.FindIndex(data)
	if loc == nil {
		return nil, fmt.Errorf("no %q line in the configuration", key)
	}
	if _, err := strconv.ParseFloat(value, 64); err != nil && value != "true" && value != "false" {
		value = strconv.Quote(value)
	}
	out := append([]byte{}, data[:loc[0]]...)
	out = append(out, key+" = "+value...)
	return append(out, data[loc[1]:]...), nil
}

// runScale measures one fleet size end to end.
func runScale(ctx context.Context, o options, groups int) (*scaleResult, error) {
	switch {
	case o.Reuse != "":
		return reuseScale(ctx, o, groups)
	case o.Synthetic:
		return runSynthetic(ctx, o, groups)
	}
	dir, cfg, err := workDir(o, fmt.Sprintf("g%d-", groups))
	if err != nil {
		return nil, err
	}
	if !o.Keep {
		defer os.RemoveAll(dir)
	}
	baseStep := time.Duration(cfg.Global.BaselineStep)
	if o.HistoryStep == 0 {
		o.HistoryStep = baseStep
	}
	if !o.FullResolution {
		if o.HistoryStep%time.Duration(cfg.Global.EvaluationInterval) != 0 {
			return nil, fmt.Errorf("--history-step %s is not a multiple of the evaluation interval", o.HistoryStep)
		}
		// The history is read at baseline_step: a coarser resolution would leave most of
		// the baseline points without data, and the bootstrap would learn from gaps.
		if baseStep%o.HistoryStep != 0 {
			return nil, fmt.Errorf("--history-step %s does not divide baseline_step %s", o.HistoryStep, model.Duration(baseStep))
		}
	}

	// The timeline. The simulated cycles straddle an hour boundary, where every group refits
	// its baselines, so the worst cycle is measured too. Data at full resolution covers the
	// replay window and everything after; the anchor runs at the wall clock, so the data
	// reaches far enough into the future for it.
	start := time.Now()
	hour := start.Truncate(time.Hour)
	now := hour.Add(-time.Duration(o.Cycles/2) * o.Interval)
	f := &fleet{
		groups:       groups,
		start:        now.Add(-time.Duration(o.Days) * 24 * time.Hour).Truncate(o.HistoryStep),
		recent:       now.Add(-time.Duration(cfg.Global.Replay) - 30*time.Minute).Truncate(o.HistoryStep),
		histStep:     o.HistoryStep,
		histPair:     o.HistoryPair,
		recentStep:   15 * time.Second,
		anomalyStart: now.Add(-2 * time.Hour),
	}
	if o.FullResolution {
		f.histStep, f.histPair = f.recentStep, 0
	}
	f.end = start.Truncate(f.recentStep)
	future := o.Future
	if future == 0 {
		// promtool imports about 500 000 samples per CPU-second here (BENCHMARKS.md); allow
		// for a busy machine.
		est := time.Duration(float64(f.samples())/200e3) * time.Second
		future = est + o.anchorWall() + 10*time.Minute
	}
	f.end = f.end.Add(future).Truncate(f.recentStep)
	if need := now.Add(time.Duration(o.Cycles+3) * o.Interval); f.end.Before(need) { // the cycles, then a restart and its cycle
		f.end = need
	}
	res := &scaleResult{Groups: groups, Series: groups * seriesPerGroup, ConfigSet: o.ConfigSet, WorkerMemoryLimit: o.WorkerMemoryLimit, Fleet: fleetInfo{
		Start: f.start, Recent: f.recent, End: f.end, HistoryStep: model.Duration(f.histStep).String(),
		HistoryPair: model.Duration(f.histPair).String(), RecentStep: model.Duration(f.recentStep).String(),
		Simulated: now, AnomalyStart: f.anomalyStart,
	}}
	o.Logf("G=%d: %d series, %d samples from %s to %s (simulated now %s), in %s", groups, res.Series, f.samples(),
		f.start.UTC().Format(time.RFC3339), f.end.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339), dir)

	dataDir := filepath.Join(dir, "data")
	res.Backfill, err = backfill(ctx, f, dir, dataDir, o.Logf)
	if err != nil {
		return res, err
	}
	o.Logf("G=%d: backfill %d samples in %.0fs (promtool %.0f CPU-s, %.0f samples/CPU-s; writing %.0f CPU-s)", groups,
		res.Backfill.Samples, res.Backfill.Wall, res.Backfill.PromtoolCPU, res.Backfill.SamplesPerPromtoolCPUSecond(), res.Backfill.GenCPU)
	if err := writeJSON(filepath.Join(dir, "fleet.json"), res); err != nil {
		return res, err
	}
	return res, measureFleet(ctx, o, res, dir)
}

// workDir makes a directory for one fleet size under o.WorkDir (named prefix*) and writes the
// configuration copy measured into it, as rules.toml.
func workDir(o options, prefix string) (string, *config.Config, error) {
	if err := os.MkdirAll(o.WorkDir, 0o755); err != nil {
		return "", nil, err
	}
	dir, err := os.MkdirTemp(o.WorkDir, prefix)
	if err != nil {
		return "", nil, err
	}
	cfg, err := writeConfig(o.ConfigFile, filepath.Join(dir, "rules.toml"), o.Interval, o.ConfigSet)
	if err != nil {
		os.RemoveAll(dir)
		return "", nil, fmt.Errorf("config: %w", err)
	}
	return dir, cfg, nil
}

// reuseScale measures again over a fleet kept by an earlier --keep run (its directory holds
// fleet.json): no generation or backfill. The anchor runs only if the data still reaches far
// enough past the wall clock.
func reuseScale(ctx context.Context, o options, groups int) (*scaleResult, error) {
	b, err := os.ReadFile(filepath.Join(o.Reuse, "fleet.json"))
	if err != nil {
		return nil, fmt.Errorf("--reuse: %w", err)
	}
	res := &scaleResult{}
	if err := json.Unmarshal(b, res); err != nil {
		return nil, fmt.Errorf("--reuse: %w", err)
	}
	if res.Groups != groups {
		return nil, fmt.Errorf("--reuse %s holds G=%d, not %d", o.Reuse, res.Groups, groups)
	}
	res.ConfigSet, res.WorkerMemoryLimit = o.ConfigSet, o.WorkerMemoryLimit
	if _, err := writeConfig(o.ConfigFile, filepath.Join(o.Reuse, "rules.toml"), o.Interval, o.ConfigSet); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if need := res.Fleet.Simulated.Add(time.Duration(o.Cycles+3) * o.Interval); res.Fleet.End.Before(need) {
		return nil, fmt.Errorf("--reuse: the data ends at %s, before %d cycles from %s", res.Fleet.End, o.Cycles, res.Fleet.Simulated)
	}
	if o.Anchor && time.Now().Add(o.anchorWall()).After(res.Fleet.End) {
		o.Logf("G=%d: the kept data ends at %s: no anchor this time", groups, res.Fleet.End.Format(time.RFC3339))
		o.Anchor = false
	}
	o.Logf("G=%d: reusing %s (simulated now %s)", groups, o.Reuse, res.Fleet.Simulated.UTC().Format(time.RFC3339))
	return res, measureFleet(ctx, o, res, o.Reuse)
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

// anchorWall is how long the idle measurement and the anchor take at the wall clock.
func (o options) anchorWall() time.Duration {
	return o.Idle + time.Duration(o.Cycles+4)*o.AnchorInterval
}

// measureFleet starts Prometheus over the backfilled fleet in dir and measures the anchor
// and emergentd.
func measureFleet(ctx context.Context, o options, res *scaleResult, dir string) error {
	groups := res.Groups
	cfgPath := filepath.Join(dir, "rules.toml")
	dataDir := filepath.Join(dir, "data")
	now := res.Fleet.Simulated
	prom, err := startPrometheus(ctx, dir, dataDir, "", o.AnchorInterval)
	if err != nil {
		return err
	}
	defer prom.Stop()
	pc := newPromClient(prom.URL)

	// Prometheus's CPU when nobody asks anything: subtracted from every measurement.
	res.IdlePromCPU, err = idleCPU(ctx, prom, o.Idle)
	if err != nil {
		return err
	}

	if o.Anchor {
		if time.Now().Add(o.anchorWall()).After(res.Fleet.End) {
			return fmt.Errorf("the data ends at %s, before the anchor could finish: raise --future", res.Fleet.End.Format(time.RFC3339))
		}
		res.Anchor, err = runAnchor(ctx, o, dir, prom, pc, res.IdlePromCPU)
		if err != nil {
			return fmt.Errorf("anchor: %w", err)
		}
		o.Logf("G=%d: anchor: %.0f evaluations, Prometheus %.4f CPU-s and %.0f samples per evaluation", groups,
			res.Anchor.Evaluations, res.Anchor.PerEval(), res.Anchor.SamplesPerEval())
	}

	return runEmergent(ctx, o, res, cfgPath, now, prometheusBackend(prom), pc)
}

// backend is the query API emergentd is measured against: a backfilled Prometheus or promsynth.
type backend struct {
	URL string
	// CPU returns the CPU seconds the backend has used so far.
	CPU func() (float64, error)
}

func prometheusBackend(prom *stack.Process) backend {
	return backend{URL: prom.URL, CPU: func() (float64, error) { return pidCPU(prom.PID()) }}
}

// idleCPU measures Prometheus's CPU seconds per second while it answers nothing.
func idleCPU(ctx context.Context, prom *stack.Process, d time.Duration) (float64, error) {
	time.Sleep(2 * time.Second) // let start-up work finish
	c0, err := pidCPU(prom.PID())
	if err != nil {
		return 0, err
	}
	t0 := time.Now()
	select {
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-time.After(d):
	}
	c1, err := pidCPU(prom.PID())
	if err != nil {
		return 0, err
	}
	return (c1 - c0) / time.Since(t0).Seconds(), nil
}

// runAnchor loads the static rules into the running Prometheus, lets its rule manager evaluate
// them for o.Cycles evaluations at the wall clock, and measures what that cost Prometheus.
// The rules are unloaded again before returning.
func runAnchor(ctx context.Context, o options, dir string, prom *stack.Process, pc *promClient, idle float64) (*anchorResult, error) {
	ruleFile := filepath.Join(dir, "anchor-rules.yml")
	if err := writeAnchorRules(ruleFile, o.AnchorInterval); err != nil {
		return nil, err
	}
	configPath := filepath.Join(dir, "prometheus.yml")
	if err := writePrometheusConfig(configPath, ruleFile, o.AnchorInterval); err != nil {
		return nil, err
	}
	if err := pc.reload(ctx); err != nil {
		return nil, err
	}
	defer func() {
		_ = writePrometheusConfig(configPath, "", o.AnchorInterval)
		_ = pc.reload(context.Background())
	}()

	// Skip the first evaluation (cold caches), then measure from right after an evaluation.
	first, err := waitEvaluations(ctx, pc, time.Time{}, 2, o.AnchorInterval)
	if err != nil {
		return nil, err
	}
	m0, err := pc.metrics(ctx)
	if err != nil {
		return nil, err
	}
	c0, err := pidCPU(prom.PID())
	if err != nil {
		return nil, err
	}
	t0 := time.Now()
	last, err := waitEvaluations(ctx, pc, first.LastEvaluation, o.Cycles, o.AnchorInterval)
	if err != nil {
		return nil, err
	}
	c1, err := pidCPU(prom.PID())
	if err != nil {
		return nil, err
	}
	wall := time.Since(t0).Seconds()
	m1, err := pc.metrics(ctx)
	if err != nil {
		return nil, err
	}
	group := fmt.Sprintf("%s;%s", ruleFile, anchorGroup)
	a := &anchorResult{
		Interval:        o.AnchorInterval.Seconds(),
		Evaluations:     math.Round(float64(last.LastEvaluation.Sub(first.LastEvaluation)) / float64(o.AnchorInterval)),
		Wall:            wall,
		PromCPU:         c1 - c0,
		PromCPUNet:      c1 - c0 - idle*wall,
		RuleEvalSeconds: delta(m0, m1, "prometheus_rule_evaluation_duration_seconds_sum"),
		RuleEvals:       delta(m0, m1, "prometheus_rule_evaluation_duration_seconds_count"),
		GroupLast:       m1[fmt.Sprintf(`prometheus_rule_group_last_duration_seconds{rule_group=%q}`, group)],
		Failures:        delta(m0, m1, fmt.Sprintf(`prometheus_rule_evaluation_failures_total{rule_group=%q}`, group)),
		Health:          last.Health,
		Errors:          last.Errors,
	}
	if a.Evaluations <= 0 {
		return nil, fmt.Errorf("no evaluations measured (metrics %q missing?)", group)
	}
	// Samples touched: the same expressions at the same timestamps, with stats=all.
	if o.Stats {
		for k := 0; k < int(a.Evaluations); k++ {
			at := last.LastEvaluation.Add(-time.Duration(k) * o.AnchorInterval)
			for _, r := range anchorRules {
				st, err := pc.instantStats(ctx, r.expr, at)
				if err != nil {
					return nil, err
				}
				a.SamplesTouched += st.Samples
				a.SeriesReturned += st.Series
			}
		}
	}
	return a, nil
}

// waitEvaluations waits until the anchor group has evaluated n times after since, and returns
// its state right after the last of them.
func waitEvaluations(ctx context.Context, pc *promClient, since time.Time, n int, interval time.Duration) (ruleGroupState, error) {
	deadline := time.Now().Add(time.Duration(n+3)*interval + time.Minute)
	if !since.IsZero() {
		// Sleep through most of the wait: polling /api/v1/rules costs Prometheus CPU too.
		time.Sleep(time.Until(since.Add(time.Duration(n)*interval - interval/2)))
	}
	last := since
	seen := 0
	for time.Now().Before(deadline) {
		st, err := pc.ruleGroup(ctx, anchorGroup)
		if err == nil && st.LastEvaluation.After(last) {
			if since.IsZero() {
				seen++ // warming up: any evaluation counts
			} else {
				// Several evaluations may have passed between two polls: count intervals.
				seen = int(math.Round(float64(st.LastEvaluation.Sub(since)) / float64(interval)))
			}
			last = st.LastEvaluation
			if seen >= n {
				return st, nil
			}
		}
		select {
		case <-ctx.Done():
			return ruleGroupState{}, ctx.Err()
		case <-time.After(min(interval/10, time.Second)):
		}
	}
	return ruleGroupState{}, fmt.Errorf("rule group %s did not evaluate %d times in time", anchorGroup, n)
}

func delta(m0, m1 map[string]float64, name string) float64 {
	a, ok0 := m0[name]
	b, ok1 := m1[name]
	if !ok1 {
		return math.NaN()
	}
	if !ok0 {
		a = 0
	}
	return b - a
}

// runEmergent runs emergentd's evaluation in a worker process for the bootstrap and o.Cycles
// cycles, measuring Prometheus's CPU around each, then replays the queries with stats=all.
func runEmergent(ctx context.Context, o options, res *scaleResult, cfgPath string, now time.Time, prom backend, pc *promClient) error {
	profiles := ""
	if o.ProfileDir != "" {
		profiles = filepath.Join(o.ProfileDir, fmt.Sprintf("g%d", res.Groups))
		if err := os.MkdirAll(profiles, 0o755); err != nil {
			return err
		}
	}
	statePath := ""
	if o.Restart {
		statePath = filepath.Join(filepath.Dir(cfgPath), "engine-state.gob")
		defer os.Remove(statePath)
	}
	w, err := startWorker(workerJob{ConfigFile: cfgPath, PrometheusURL: prom.URL, Now: now, Cycles: o.Cycles, ProfileDir: profiles, SaveState: statePath, MemoryLimit: o.WorkerMemoryLimit})
	if err != nil {
		return err
	}
	defer w.stop()
	var handed *handedState
	for cycle := 0; cycle <= o.Cycles; cycle++ {
		c0, err := prom.CPU()
		if err != nil {
			return err
		}
		rep, peak, err := w.step(o.MaxWorkerRSS)
		c1, _ := prom.CPU()
		if err != nil {
			res.WorkerFailed = fmt.Sprintf("cycle %d: %v", cycle, err)
			res.WorkerMem.PeakRSS = maxInt(res.WorkerMem.PeakRSS, peak)
			o.Logf("G=%d: emergentd failed at cycle %d: %v (Prometheus %.1f CPU-s meanwhile)", res.Groups, cycle, err, c1-c0)
			return nil
		}
		cr := cycleResult{stepReport: rep, PromCPU: c1 - c0, PromCPUNet: c1 - c0 - res.IdlePromCPU*rep.Wall}
		if cycle == 0 {
			// Queries the worker gave up on (timeouts) may still run in Prometheus, and it
			// collects their garbage: that is the bootstrap's cost too, and must not land on
			// the first cycles.
			settleCPU, settled := settle(ctx, prom, res.IdlePromCPU)
			cr.PromCPU += settleCPU
			cr.PromCPUNet += settleCPU - res.IdlePromCPU*settled.Seconds()
			cr.PromSettle = settled.Seconds()
			res.Bootstrap = cr
			o.Logf("G=%d: bootstrap %.1fs wall, %.2f CPU-s, %d queries (%v failed), peak RSS %.0f MiB; Prometheus %.2f CPU-s",
				res.Groups, rep.Wall, rep.CPU, rep.Queries, rep.FailedQueries, float64(rep.Mem.PeakRSS)/(1<<20), cr.PromCPU)
		} else {
			res.Cycles = append(res.Cycles, cr)
		}
		res.WorkerMem = rep.Mem
		if rep.Handed != nil {
			handed, res.StateBytes, res.StateSaveSecs = rep.Handed, rep.StateBytes, rep.StateSave
		}
		if rep.HeapAfterGC > 0 {
			res.HeapAfterGC = rep.HeapAfterGC
		}
		if rep.HeapAfterBootstrap > 0 {
			res.HeapAfterBootstrap = rep.HeapAfterBootstrap
		}
		if rep.Err != "" {
			res.WorkerFailed = fmt.Sprintf("cycle %d: %s", cycle, rep.Err)
			o.Logf("G=%d: emergentd failed at cycle %d: %s", res.Groups, cycle, rep.Err)
			break
		}
	}
	if err := w.stop(); err != nil {
		o.Logf("G=%d: worker: %v", res.Groups, err)
	}
	if o.Restart && res.WorkerFailed == "" && handed != nil {
		restartAt := now.Add(time.Duration(o.Cycles+1) * o.Interval)
		if !o.Synthetic { // promsynth stores nothing emergentd exports; the state file is the restart
			if res.Restart, err = measureRestart(ctx, o, res, workerJob{ConfigFile: cfgPath, PrometheusURL: prom.URL, Now: restartAt, Cycles: 1, Restore: handed, MemoryLimit: o.WorkerMemoryLimit}, handed, prom); err != nil {
				return err
			}
		}
		if res.Reload, err = measureRestart(ctx, o, res, workerJob{ConfigFile: cfgPath, PrometheusURL: prom.URL, Now: restartAt, Cycles: 1, LoadState: statePath, MemoryLimit: o.WorkerMemoryLimit}, handed, prom); err != nil {
			return err
		}
	}
	if !o.Stats {
		return nil
	}
	all := append([]*cycleResult{&res.Bootstrap}, ptrs(res.Cycles)...)
	for _, c := range all {
		for _, q := range c.QueriesIssued {
			st, err := pc.rangeStats(ctx, q.Query, q.Start, q.End, q.Step)
			if err != nil {
				return fmt.Errorf("stats pass: %w", err)
			}
			c.SamplesTouched += st.Samples
		}
	}
	res.StatsDone = true
	return nil
}

// measureRestart starts a second worker (job: handed the first one's state, or loading its state
// file) and measures its start-up and first cycle, and which of the first one's open episodes it
// has after them.
func measureRestart(ctx context.Context, o options, res *scaleResult, job workerJob, handed *handedState, prom backend) (*restartResult, error) {
	w, err := startWorker(job)
	if err != nil {
		return nil, err
	}
	defer w.stop()
	rr := &restartResult{Open: len(handed.Episodes)}
	for cycle := 0; cycle <= 1; cycle++ {
		c0, err := prom.CPU()
		if err != nil {
			return nil, err
		}
		rep, peak, err := w.step(o.MaxWorkerRSS)
		c1, _ := prom.CPU()
		if err != nil || rep.Err != "" {
			o.Logf("G=%d: the restart failed at cycle %d: %v %s", res.Groups, cycle, err, rep.Err)
			return nil, nil
		}
		rr.PeakRSS = maxInt(rr.PeakRSS, maxInt(peak, rep.Mem.PeakRSS))
		if cycle == 0 {
			settleCPU, _ := settle(ctx, prom, res.IdlePromCPU)
			rr.cycleResult = cycleResult{stepReport: rep, PromCPU: c1 - c0 + settleCPU, PromCPUNet: c1 - c0 + settleCPU - res.IdlePromCPU*rep.Wall}
			continue
		}
		starts := map[string]time.Time{}
		for _, ep := range rep.Handed.Episodes {
			starts[ep.Rule+"/"+fmt.Sprint(ep.Labels)] = ep.Start
		}
		for _, ep := range handed.Episodes {
			if s, ok := starts[ep.Rule+"/"+fmt.Sprint(ep.Labels)]; ok && s.Equal(ep.Start) {
				rr.Kept++
			}
		}
	}
	how := "handed over"
	if job.LoadState != "" {
		how = "from the state file"
	}
	o.Logf("G=%d: restart, state %s: %.1fs wall, %.2f CPU-s, %d queries, peak RSS %.0f MiB; Prometheus %.2f CPU-s; %d of %d open episodes kept their start",
		res.Groups, how, rr.Wall, rr.CPU, rr.Queries, float64(rr.PeakRSS)/(1<<20), rr.PromCPU, rr.Kept, rr.Open)
	return rr, w.stop()
}

func ptrs(cs []cycleResult) []*cycleResult {
	out := make([]*cycleResult, len(cs))
	for i := range cs {
		out[i] = &cs[i]
	}
	return out
}

// summary is the distribution of one number over the cycles.
type summary struct{ Median, Max, Mean float64 }

func summarize(cs []cycleResult, f func(cycleResult) float64) summary {
	if len(cs) == 0 {
		return summary{math.NaN(), math.NaN(), math.NaN()}
	}
	xs := make([]float64, len(cs))
	sum := 0.0
	for i, c := range cs {
		xs[i] = f(c)
		sum += xs[i]
	}
	sort.Float64s(xs)
	med := xs[len(xs)/2]
	if len(xs)%2 == 0 {
		med = (xs[len(xs)/2-1] + xs[len(xs)/2]) / 2
	}
	return summary{Median: med, Max: xs[len(xs)-1], Mean: sum / float64(len(xs))}
}
