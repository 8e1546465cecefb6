package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/prometheus/common/model"
)

// blockDuration is the length of the TSDB blocks the backfill writes. promtool parses its whole
// input file once per block it writes, so the fleet is written as one file per block-aligned
// window: every sample is parsed twice (promtool's min/max pass and the block pass) instead of
// once per block of the whole range. 18h is one of the block ranges promtool accepts
// (2h·3^k), and Prometheus is started with it as its largest block, so it never compacts the
// backfilled blocks while we measure.
const blockDuration = 18 * time.Hour

// backfillStats is what backfilling one fleet cost.
type backfillStats struct {
	Samples      int64   `json:"samples"`
	Bytes        int64   `json:"openmetrics_bytes"`
	Windows      int     `json:"windows"`
	Wall         float64 `json:"wall_seconds"`
	GenCPU       float64 `json:"generate_cpu_seconds"`  // writing OpenMetrics (this process)
	PromtoolCPU  float64 `json:"promtool_cpu_seconds"`  // promtool user+system
	PromtoolWall float64 `json:"promtool_wall_seconds"` // promtool wall, summed over windows
}

// SamplesPerPromtoolCPUSecond is promtool's throughput.
func (b backfillStats) SamplesPerPromtoolCPUSecond() float64 {
	return float64(b.Samples) / b.PromtoolCPU
}

// backfill writes the fleet into dataDir with promtool, one block-aligned window at a time.
// The next window is generated while promtool imports the previous one; each file is deleted
// once imported, so the disk holds at most two windows of text.
func backfill(ctx context.Context, f *fleet, workDir, dataDir string, logf func(string, ...any)) (backfillStats, error) {
	var st backfillStats
	began := time.Now()
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		return st, fmt.Errorf("backfill: promtool is not on PATH; install it with `apt-get install prometheus`: %w", err)
	}
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return st, err
	}
	type window struct {
		path    string
		samples int64
		bytes   int64
		genCPU  float64 // CPU seconds this process spent writing it
		err     error
	}
	gen := newGenerator(f)
	windows := make(chan window, 1)
	genCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		defer close(windows)
		from := f.start.Truncate(blockDuration)
		for i := 0; !from.After(f.end); i++ {
			to := from.Add(blockDuration)
			w := window{path: filepath.Join(workDir, fmt.Sprintf("window-%03d.om", i))}
			cpu0 := processCPU()
			w.samples, w.bytes, w.err = writeFile(gen, w.path, from, to)
			w.genCPU = processCPU() - cpu0 // only this goroutine writes; the main one waits on promtool
			from = to
			if w.samples == 0 && w.err == nil {
				os.Remove(w.path)
				continue
			}
			select {
			case windows <- w:
			case <-genCtx.Done():
				os.Remove(w.path)
				return
			}
			if w.err != nil {
				return
			}
		}
	}()
	for w := range windows {
		if w.err != nil {
			return st, fmt.Errorf("backfill: writing %s: %w", w.path, w.err)
		}
		start := time.Now()
		cmd := exec.CommandContext(ctx, promtool, "tsdb", "create-blocks-from", "openmetrics", "--quiet",
			"--max-block-duration="+model.Duration(blockDuration).String(), w.path, dataDir)
		out, err := cmd.CombinedOutput()
		os.Remove(w.path)
		if err != nil {
			return st, fmt.Errorf("backfill: promtool on %s: %w\n%s", w.path, err, out)
		}
		st.PromtoolWall += time.Since(start).Seconds()
		st.PromtoolCPU += (cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()).Seconds()
		st.GenCPU += w.genCPU
		st.Samples += w.samples
		st.Bytes += w.bytes
		st.Windows++
		logf("backfill: window %d: %d samples (%.0f MB) in %.1fs, promtool %.0f samples/CPU-s",
			st.Windows, w.samples, float64(w.bytes)/1e6, time.Since(start).Seconds(), st.SamplesPerPromtoolCPUSecond())
	}
	st.Wall = time.Since(began).Seconds()
	return st, ctx.Err()
}

func writeFile(gen *generator, path string, from, to time.Time) (samples, size int64, err error) {
	file, err := os.Create(path)
	if err != nil {
		return 0, 0, err
	}
	samples, err = gen.writeWindow(file, from, to)
	if cerr := file.Close(); err == nil {
		err = cerr
	}
	if fi, serr := os.Stat(path); serr == nil {
		size = fi.Size()
	}
	return samples, size, err
}
