package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"sync"
	"time"

	"github.com/KimMachineGun/automemlimit/memlimit"
	"github.com/emergent-sh/emergent/alerts"
	"github.com/emergent-sh/emergent/daemon"
	"github.com/emergent-sh/emergent/detector"
	"github.com/emergent-sh/emergent/engine"
	"github.com/emergent-sh/emergent/sources"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
)

// The worker is emergentd's evaluation in a process of its own, so its CPU time and peak RSS
// are emergentd's alone (not the generator's or the harness's). It makes the daemon's calls —
// daemon.LoadConfig, sources.NewPrometheus, engine.New, Bootstrap then Advance, and
// alerts.Manager.Update with the engine's alerts — on a simulated clock: step k runs at
// now+k·interval when the harness says "go" on stdin, and reports one JSON line on stdout.

// workerEnv selects worker mode; it holds the job as JSON.
const workerEnv = "EMERGENT_SCALE_WORKER"

// workerJob is what the harness asks of a worker.
type workerJob struct {
	ConfigFile    string    `json:"config_file"`
	PrometheusURL string    `json:"prometheus_url"`
	Now           time.Time `json:"now"` // simulated wall clock of the bootstrap
	Cycles        int       `json:"cycles"`
	// ProfileDir, if set, receives bootstrap.cpu.pprof, bootstrap.allocs.pprof (allocations
	// since start, i.e. the bootstrap's), bootstrap.heap.pprof (what the bootstrap left, after
	// a collection) and cycles.cpu.pprof.
	ProfileDir string `json:"profile_dir,omitempty"`
	// Restore, if set, is the state an earlier worker left: this one is its restart.
	Restore *handedState `json:"restore,omitempty"`
	// SaveState, if set, is where the worker saves its evaluation state after its last cycle
	// (as emergentd does at shutdown); LoadState, where it loads one from instead of a
	// bootstrap (as emergentd does at start).
	SaveState string `json:"save_state,omitempty"`
	LoadState string `json:"load_state,omitempty"`
	// MemoryLimit, if positive, is the memory limit (bytes) of the container the worker
	// stands for: it sets GOMEMLIMIT from it as emergentd does from its cgroup's.
	MemoryLimit int64 `json:"memory_limit,omitempty"`
}

// handedState is what a process hands its restart through Prometheus (engine.Restore): the
// episodes it had open and the last step it evaluated.
type handedState struct {
	Episodes []handedEpisode `json:"episodes"`
	Until    time.Time       `json:"until"`
}

type handedEpisode struct {
	Rule          string            `json:"rule"`
	Labels        map[string]string `json:"labels"`
	Start         time.Time         `json:"start"`
	RecurrenceGap time.Duration     `json:"recurrence_gap"`
}

func handOver(active []detector.Episode, until time.Time) *handedState {
	h := &handedState{Until: until}
	for _, ep := range active {
		h.Episodes = append(h.Episodes, handedEpisode{Rule: ep.Rule, Labels: ep.Labels, Start: ep.Start, RecurrenceGap: ep.RecurrenceGap})
	}
	return h
}

func (h *handedState) episodes() []detector.Episode {
	var out []detector.Episode
	for _, ep := range h.Episodes {
		out = append(out, detector.Episode{Rule: ep.Rule, Labels: ep.Labels, Start: ep.Start, RecurrenceGap: ep.RecurrenceGap})
	}
	return out
}

// recordedQuery is one range query the engine sent.
type recordedQuery struct {
	Query string        `json:"query"`
	Start time.Time     `json:"start"`
	End   time.Time     `json:"end"`
	Step  time.Duration `json:"step"`
}

// stepReport is one worker phase: the bootstrap (cycle 0) or one evaluation cycle.
type stepReport struct {
	Cycle         int             `json:"cycle"`
	Wall          float64         `json:"wall_seconds"`
	CPU           float64         `json:"cpu_seconds"`
	Queries       int             `json:"queries"`
	FailedQueries float64         `json:"failed_queries"`
	Series        int             `json:"series_returned"`
	Samples       int64           `json:"samples_returned"`
	Active        int             `json:"active_episodes"`
	Events        int             `json:"events"`
	Err           string          `json:"error,omitempty"`
	Mem           memStatus       `json:"mem"`
	HeapInuse     uint64          `json:"heap_inuse_bytes"`
	SinceStart    float64         `json:"since_process_start_seconds"`
	QueriesIssued []recordedQuery `json:"queries_issued"`
	HeapAfterGC   uint64          `json:"heap_after_gc_bytes,omitempty"` // last report only
	// HeapAfterBootstrap is the heap the bootstrap left, after a collection (its report only).
	HeapAfterBootstrap uint64         `json:"heap_after_bootstrap_bytes,omitempty"`
	Handed             *handedState   `json:"handed,omitempty"`             // last report only
	StateSave          float64        `json:"state_save_seconds,omitempty"` // last report only
	StateBytes         int64          `json:"state_bytes,omitempty"`        // last report only
	FiringByRule       map[string]int `json:"firing_by_rule,omitempty"`
	WorkerPeakHeap     uint64         `json:"heap_sys_bytes"`
}

// recordingSource counts what the engine asks and what comes back.
type recordingSource struct {
	next engine.Source

	mu      sync.Mutex
	queries []recordedQuery
	series  int
	samples int64
}

func (s *recordingSource) QueryRange(ctx context.Context, q string, r sources.Range) (model.Matrix, sources.Warnings, error) {
	return s.count(q, r, func() (model.Matrix, sources.Warnings, error) { return s.next.QueryRange(ctx, q, r) })
}

// QueryRangeStepAveraged passes the history's step-averaged queries on as the engine asks them
// of emergentd's own source, counted under the query sent.
func (s *recordingSource) QueryRangeStepAveraged(ctx context.Context, q string, r sources.Range) (model.Matrix, sources.Warnings, error) {
	sa, ok := s.next.(interface {
		QueryRangeStepAveraged(context.Context, string, sources.Range) (model.Matrix, sources.Warnings, error)
	})
	if !ok {
		return s.QueryRange(ctx, q, r)
	}
	sent, err := sources.StepAveragedQuery(q, r.Step)
	if err != nil {
		return nil, nil, err
	}
	return s.count(sent, r, func() (model.Matrix, sources.Warnings, error) { return sa.QueryRangeStepAveraged(ctx, q, r) })
}

// count runs query and counts it, its series and samples.
func (s *recordingSource) count(q string, r sources.Range, query func() (model.Matrix, sources.Warnings, error)) (model.Matrix, sources.Warnings, error) {
	m, w, err := query()
	n := int64(0)
	for _, ss := range m {
		n += int64(len(ss.Values))
	}
	s.mu.Lock()
	s.queries = append(s.queries, recordedQuery{Query: q, Start: r.Start, End: r.End, Step: r.Step})
	s.series += len(m)
	s.samples += n
	s.mu.Unlock()
	return m, w, err
}

// Recycle passes an answer the engine is done with on to the source, when it reuses them
// (sources.Recycler), as the engine does with emergentd's own source.
func (s *recordingSource) Recycle(q string, m model.Matrix) {
	if rc, ok := s.next.(sources.Recycler); ok {
		rc.Recycle(q, m)
	}
}

func (s *recordingSource) take() ([]recordedQuery, int, int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	q, series, samples := s.queries, s.series, s.samples
	s.queries, s.series, s.samples = nil, 0, 0
	return q, series, samples
}

// runWorker is the worker process's main.
func runWorker(jobJSON string) int {
	began := time.Now()
	var job workerJob
	if err := json.Unmarshal([]byte(jobJSON), &job); err != nil {
		fmt.Fprintf(os.Stderr, "worker: bad job: %v\n", err)
		return 2
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	// emergentd's collector target (--gogc's default), as emergentd sets it; GOGC in the
	// environment wins, to measure another.
	daemon.SetGCPercent(daemon.GCPercent, logger)
	if job.MemoryLimit > 0 {
		if _, err := daemon.SetMemoryLimit(daemon.MemoryLimitRatio, memlimit.Limit(uint64(job.MemoryLimit)), logger); err != nil {
			fmt.Fprintf(os.Stderr, "worker: %v\n", err)
			return 2
		}
	}
	cfg, err := daemon.LoadConfig(job.ConfigFile, job.PrometheusURL, "")
	if err != nil {
		fmt.Fprintf(os.Stderr, "worker: %v\n", err)
		return 2
	}
	reg := prometheus.NewRegistry()
	prom, err := sources.NewPrometheus(cfg.Prometheus, logger, reg)
	if err != nil {
		fmt.Fprintf(os.Stderr, "worker: %v\n", err)
		return 2
	}
	src := &recordingSource{next: prom}
	eng := engine.New(cfg, src, logger, engine.NewMetrics(reg))
	eng.CheapReplay() // as emergentd's engine
	if job.Restore != nil {
		eng.Restore(job.Restore.episodes(), job.Restore.Until)
	}
	mgr, err := alerts.NewManager(cfg.Global, cfg.Receivers, cfg.Routes, logger, reg)
	if err != nil {
		fmt.Fprintf(os.Stderr, "worker: %v\n", err)
		return 2
	}
	interval := time.Duration(cfg.Global.EvaluationInterval)
	delay := time.Duration(cfg.Global.EvaluationDelay)

	in := bufio.NewScanner(os.Stdin)
	enc := json.NewEncoder(os.Stdout)
	ctx := context.Background()
	for cycle := 0; cycle <= job.Cycles; cycle++ {
		if !in.Scan() { // the harness reads Prometheus's CPU time, then says go
			return 1
		}
		now := job.Now.Add(time.Duration(cycle) * interval)
		if job.ProfileDir != "" && cycle <= 1 {
			name := "bootstrap.cpu.pprof"
			if cycle == 1 {
				pprof.StopCPUProfile()
				writeProfile(filepath.Join(job.ProfileDir, "bootstrap.allocs.pprof"), "allocs")
				name = "cycles.cpu.pprof"
			}
			startCPUProfile(filepath.Join(job.ProfileDir, name))
		}
		failed0 := counterValue(reg, "emergent_prometheus_queries_total", "outcome", "error")
		cpu0, wall0 := processCPU(), time.Now()
		// What daemon.evaluate does at every tick.
		var events []detector.Event
		switch {
		case cycle == 0 && job.LoadState != "":
			if err = loadState(eng, job.LoadState, now.Add(-delay)); err == nil {
				events, err = eng.Advance(ctx, now.Add(-delay))
			}
		case cycle == 0:
			events, err = eng.Bootstrap(ctx, now.Add(-delay))
		default:
			events, err = eng.Advance(ctx, now.Add(-delay))
		}
		if err == nil {
			mgr.Update(now, eng.Alerts())
		}
		rep := stepReport{Cycle: cycle, Wall: time.Since(wall0).Seconds(), CPU: processCPU() - cpu0, Events: len(events)}
		rep.FailedQueries = counterValue(reg, "emergent_prometheus_queries_total", "outcome", "error") - failed0
		if err != nil {
			rep.Err = err.Error()
		}
		rep.QueriesIssued, rep.Series, rep.Samples = src.take()
		rep.Queries = len(rep.QueriesIssued)
		active := eng.Active()
		rep.Active = len(active)
		rep.FiringByRule = map[string]int{}
		for _, ep := range active {
			rep.FiringByRule[ep.Rule]++
		}
		rep.SinceStart = time.Since(began).Seconds()
		var ms runtime.MemStats
		if cycle == 0 && job.LoadState == "" && err == nil {
			// What the daemon does after its bootstrap (the start-up's answers are garbage):
			// collect and return the heap. What is left is the state, per group the bytes per
			// group reported. Outside the measured CPU, as it is outside the daemon's cycles.
			debug.FreeOSMemory()
			runtime.ReadMemStats(&ms)
			rep.HeapAfterBootstrap = ms.HeapAlloc
			if job.ProfileDir != "" {
				writeProfile(filepath.Join(job.ProfileDir, "bootstrap.heap.pprof"), "heap")
			}
		}
		rep.Mem, _ = readMemStatus("self")
		runtime.ReadMemStats(&ms)
		rep.HeapInuse, rep.WorkerPeakHeap = ms.HeapInuse, ms.HeapSys
		if cycle == job.Cycles {
			if job.ProfileDir != "" && job.Cycles > 0 {
				// The allocations since the start, before the state is saved: less
				// bootstrap.allocs.pprof (pprof -base), the cycles' own.
				writeProfile(filepath.Join(job.ProfileDir, "cycles.allocs.pprof"), "allocs")
			}
			rep.Handed = handOver(active, eng.LastStep())
			if job.SaveState != "" {
				began := time.Now()
				if err := saveState(eng, job.SaveState); err != nil {
					rep.Err = err.Error()
				}
				rep.StateSave = time.Since(began).Seconds()
				if fi, err := os.Stat(job.SaveState); err == nil {
					rep.StateBytes = fi.Size()
				}
			}
			runtime.GC()
			runtime.ReadMemStats(&ms)
			rep.HeapAfterGC = ms.HeapAlloc
			rep.Mem, _ = readMemStatus("self")
		}
		if err := enc.Encode(rep); err != nil {
			return 1
		}
		if err != nil {
			break
		}
	}
	if job.ProfileDir != "" {
		pprof.StopCPUProfile()
	}
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_ = mgr.Stop(sctx)
	return 0
}

func saveState(eng *engine.Engine, path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	if err := eng.SaveState(w); err != nil {
		f.Close()
		return err
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func loadState(eng *engine.Engine, path string, now time.Time) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return eng.LoadState(bufio.NewReaderSize(f, 1<<20), now)
}

func startCPUProfile(path string) {
	f, err := os.Create(path)
	if err == nil {
		err = pprof.StartCPUProfile(f)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "worker: CPU profile: %v\n", err)
	}
}

func writeProfile(path, name string) {
	f, err := os.Create(path)
	if err == nil {
		err = pprof.Lookup(name).WriteTo(f, 0)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "worker: %s profile: %v\n", name, err)
	}
}

// counterValue reads one counter of the registry (0 if absent).
func counterValue(reg *prometheus.Registry, name, label, value string) float64 {
	mfs, err := reg.Gather()
	if err != nil {
		return 0
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == label && lp.GetValue() == value {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// worker is a running worker process, driven by the harness.
type worker struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *json.Decoder
	pid   int
}

// startWorker runs this executable again in worker mode.
func startWorker(job workerJob) (*worker, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	b, err := json.Marshal(job)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), workerEnv+"="+string(b))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	return &worker{cmd: cmd, stdin: stdin, out: json.NewDecoder(bufio.NewReaderSize(stdout, 1<<20)), pid: cmd.Process.Pid}, nil
}

// step tells the worker to run its next phase and returns its report. While it runs, the
// worker's resident size is sampled; past maxRSS (if positive) the worker is killed by its
// PID and step returns an error saying so. peak is the largest size sampled.
func (w *worker) step(maxRSS int64) (rep stepReport, peak int64, err error) {
	if _, err := io.WriteString(w.stdin, "go\n"); err != nil {
		return rep, 0, fmt.Errorf("worker: %w", err)
	}
	done := make(chan struct{})
	killed := make(chan int64, 1)
	sampled := make(chan int64, 1)
	go func() {
		var max int64
		defer func() { sampled <- max }()
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
			}
			m, err := readMemStatus(strconv.Itoa(w.pid))
			if err != nil {
				continue
			}
			max = maxInt(max, m.RSS)
			if maxRSS > 0 && m.RSS > maxRSS {
				_ = w.cmd.Process.Kill()
				killed <- m.RSS
				return
			}
		}
	}()
	err = w.out.Decode(&rep)
	close(done)
	peak = <-sampled
	select {
	case rss := <-killed:
		return rep, peak, fmt.Errorf("worker killed: resident size %d MiB passed --max-worker-rss (%d MiB)", rss>>20, maxRSS>>20)
	default:
	}
	if err != nil {
		return rep, peak, fmt.Errorf("worker (pid %d) stopped: %w", w.pid, err)
	}
	return rep, peak, nil
}

func maxInt(a, b int64) int64 {
	if a > b {
		return a
	}
	return b
}

// stop closes the worker's stdin and waits for it; if it does not exit in time it is killed by
// the PID we started.
func (w *worker) stop() error {
	w.stdin.Close()
	done := make(chan error, 1)
	go func() { done <- w.cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(30 * time.Second):
		_ = w.cmd.Process.Kill()
		return fmt.Errorf("worker pid %d did not exit; killed", w.pid)
	}
}
