package main

import (
	"fmt"
	"io"
	"math"
	"os"
	"strings"

	"github.com/emergent-sh/emergent/daemon"
)

const mib = 1 << 20

// writeReport prints the measurements as Markdown tables (the form BENCHMARKS.md uses).
func writeReport(w io.Writer, o options, results []*scaleResult) {
	if len(results) == 0 {
		return
	}
	p := func(format string, args ...any) { fmt.Fprintf(w, format+"\n", args...) }
	p("emergentd interval %s, %d cycles; anchor interval %s.\n", o.Interval, o.Cycles, o.AnchorInterval)
	if len(o.ConfigSet) > 0 {
		p("Configuration overrides (--config.set): %s.\n", strings.Join(o.ConfigSet, ", "))
	}
	if gogc, ok := os.LookupEnv("GOGC"); ok {
		p("emergentd's GOGC: %s (from the environment).\n", gogc)
	} else {
		p("emergentd's GOGC: %d (its --gogc default).\n", daemon.GCPercent)
	}
	if o.WorkerMemoryLimit > 0 {
		p("emergentd's memory limit (--worker-memory-limit): %d MiB, so GOMEMLIMIT %.0f MiB.\n", o.WorkerMemoryLimit/mib, daemon.MemoryLimitRatio*float64(o.WorkerMemoryLimit)/mib)
	}

	if o.Synthetic {
		writeSyntheticReport(p, results)
		p("\nIn the tables below, \"Prometheus CPU\" is promsynth's (this process's, net of nothing).\n")
	} else {
		p("Backfill")
		p("")
		p("| G | series | samples | OpenMetrics | promtool CPU | promtool samples/CPU-s | writing CPU | wall |")
		p("|---:|---:|---:|---:|---:|---:|---:|---:|")
		for _, r := range results {
			b := r.Backfill
			p("| %d | %d | %s | %.1f GB | %.0f s | %s | %.0f s | %.0f s |", r.Groups, r.Series, si(float64(b.Samples)),
				float64(b.Bytes)/1e9, b.PromtoolCPU, si(b.SamplesPerPromtoolCPUSecond()), b.GenCPU, b.Wall)
		}
	}

	p("\nPer evaluation cycle (median over the cycles; max in brackets)")
	p("")
	p("| G | queries | series returned | samples returned | samples touched | emergentd CPU | emergentd wall | Prometheus CPU (net of idle) |")
	p("|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, r := range results {
		cs := r.Cycles
		if len(cs) == 0 {
			p("| %d | — | — | — | — | — | — | — |", r.Groups)
			continue
		}
		q := summarize(cs, func(c cycleResult) float64 { return float64(c.Queries) })
		se := summarize(cs, func(c cycleResult) float64 { return float64(c.Series) })
		sa := summarize(cs, func(c cycleResult) float64 { return float64(c.Samples) })
		st := summarize(cs, func(c cycleResult) float64 { return float64(c.SamplesTouched) })
		cpu := summarize(cs, func(c cycleResult) float64 { return c.CPU })
		wall := summarize(cs, func(c cycleResult) float64 { return c.Wall })
		pcpu := summarize(cs, func(c cycleResult) float64 { return c.PromCPUNet })
		failed := summarize(cs, func(c cycleResult) float64 { return c.FailedQueries }).Mean * float64(len(cs))
		qs := fmt.Sprintf("%.0f [%.0f]", q.Median, q.Max)
		if failed > 0 {
			qs += fmt.Sprintf(" (%.0f failed)", failed)
		}
		p("| %d | %s | %s | %s | %s | %s [%s] | %s [%s] | %s [%s] |", r.Groups, qs, si(se.Median), si(sa.Median),
			touched(r, st.Median), ms(cpu.Median), ms(cpu.Max), ms(wall.Median), ms(wall.Max), ms(pcpu.Median), ms(pcpu.Max))
	}

	p("\nBootstrap (history and replay) and memory")
	p("")
	p("| G | to first evaluation | emergentd CPU | queries (failed) | samples returned | samples touched | Prometheus CPU | peak RSS | RSS after cycles | heap after GC | RSS/group | heap/group |")
	p("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	var failures []string
	for _, r := range results {
		b := r.Bootstrap
		status := ""
		if r.WorkerFailed != "" {
			status = " (failed)"
			failures = append(failures, fmt.Sprintf("G=%d: %s", r.Groups, r.WorkerFailed))
		} else if b.FailedQueries > 0 {
			// Failed queries leave their rules blind for those steps: the bootstrap ended,
			// but the evaluation after it was not complete.
			status = " (incomplete)"
			failures = append(failures, fmt.Sprintf("G=%d: %.0f of %d bootstrap queries failed; the bootstrap's evaluation was incomplete", r.Groups, b.FailedQueries, b.Queries))
		}
		p("| %d | %.1f s%s | %.1f s | %d (%.0f) | %s | %s | %.1f s | %.0f MiB | %.0f MiB | %.0f MiB | %s | %s |", r.Groups, b.SinceStart, status, b.CPU,
			b.Queries, b.FailedQueries, si(float64(b.Samples)), touched(r, float64(b.SamplesTouched)), b.PromCPUNet, float64(r.WorkerMem.PeakRSS)/mib,
			float64(r.WorkerMem.RSS)/mib, float64(r.HeapAfterGC)/mib, bytesSI(float64(r.WorkerMem.RSS)/float64(r.Groups)),
			bytesSI(float64(r.HeapAfterGC)/float64(r.Groups)))
	}
	for _, f := range failures {
		p("\nemergentd: %s", f)
	}
	if o.Restart {
		p("\nRestart (a second process a step after the last cycle): handed what the first exports to Prometheus, or loading the state file it saved")
		p("")
		p("| G | state | to first evaluation | emergentd CPU | queries | samples returned | Prometheus CPU | peak RSS | open episodes kept |")
		p("|---:|---|---:|---:|---:|---:|---:|---:|---:|")
		for _, r := range results {
			for _, x := range []struct {
				how string
				r   *restartResult
			}{{"from Prometheus", r.Restart}, {fmt.Sprintf("state file (%s, saved in %.1f s)", bytesSI(float64(r.StateBytes)), r.StateSaveSecs), r.Reload}} {
				if x.r != nil {
					p("| %d | %s | %.1f s | %.1f s | %d | %s | %.1f s | %.0f MiB | %d of %d |", r.Groups, x.how, x.r.SinceStart, x.r.CPU, x.r.Queries,
						si(float64(x.r.Samples)), x.r.PromCPUNet, float64(x.r.PeakRSS)/mib, x.r.Kept, x.r.Open)
				}
			}
		}
	}
	if len(results) > 1 {
		a, b := results[len(results)-2], results[len(results)-1]
		dg := float64(b.Groups - a.Groups)
		p("\nMarginal memory per group between G=%d and G=%d: RSS %s, heap after GC %s, peak RSS %s.", a.Groups, b.Groups,
			bytesSI(float64(b.WorkerMem.RSS-a.WorkerMem.RSS)/dg), bytesSI(float64(int64(b.HeapAfterGC)-int64(a.HeapAfterGC))/dg),
			bytesSI(float64(b.WorkerMem.PeakRSS-a.WorkerMem.PeakRSS)/dg))
	}

	if o.Anchor {
		p("\nAgainst Prometheus's rule manager (static rules, same signals)")
		p("")
		p("| G | rules: Prometheus CPU/eval | rules: eval time (rule manager) | rules: samples touched/eval | emergentd: Prometheus CPU/cycle | emergentd: samples touched/cycle | CPU ratio | samples ratio |")
		p("|---:|---:|---:|---:|---:|---:|---:|---:|")
		for _, r := range results {
			a := r.Anchor
			if a == nil || len(r.Cycles) == 0 {
				continue
			}
			ourCPU := summarize(r.Cycles, func(c cycleResult) float64 { return c.PromCPUNet }).Mean
			ourSamples := summarize(r.Cycles, func(c cycleResult) float64 { return float64(c.SamplesTouched) }).Mean
			ratio := "—"
			if r.StatsDone {
				ratio = fmt.Sprintf("%.2f", ourSamples/a.SamplesPerEval())
			}
			p("| %d | %s | %s | %s | %s | %s | %.2f | %s |", r.Groups, ms(a.PerEval()), ms(a.RuleEvalSeconds/a.Evaluations),
				si(a.SamplesPerEval()), ms(ourCPU), touched(r, ourSamples), ourCPU/a.PerEval(), ratio)
		}
	}
}

// touched formats a count of samples touched, or "—" when the stats pass did not finish.
func touched(r *scaleResult, v float64) string {
	if !r.StatsDone {
		return "—"
	}
	return si(v)
}

// ms formats seconds as milliseconds.
func ms(s float64) string {
	if math.IsNaN(s) {
		return "—"
	}
	if math.Abs(s) >= 10 {
		return fmt.Sprintf("%.1f s", s)
	}
	return fmt.Sprintf("%.0f ms", s*1000)
}

// si formats a count with k/M/G.
func si(v float64) string {
	switch a := math.Abs(v); {
	case math.IsNaN(v):
		return "—"
	case a >= 1e9:
		return fmt.Sprintf("%.2f G", v/1e9)
	case a >= 1e6:
		return fmt.Sprintf("%.2f M", v/1e6)
	case a >= 1e4:
		return fmt.Sprintf("%.1f k", v/1e3)
	}
	return strings.TrimSuffix(fmt.Sprintf("%.0f", v), ".")
}

// bytesSI formats a byte count.
func bytesSI(v float64) string {
	switch a := math.Abs(v); {
	case math.IsNaN(v) || math.IsInf(v, 0):
		return "—"
	case a >= 1<<20:
		return fmt.Sprintf("%.1f MiB", v/(1<<20))
	case a >= 1<<10:
		return fmt.Sprintf("%.1f KiB", v/(1<<10))
	}
	return fmt.Sprintf("%.0f B", v)
}

// writeSyntheticReport prints the figures issue 12 sets targets for, per fleet size measured
// against promsynth.
func writeSyntheticReport(p func(string, ...any), results []*scaleResult) {
	p("Against promsynth: the issue's figures")
	p("")
	p("| G | cold start to first evaluation | its emergentd CPU | restart from the state file | its emergentd CPU | state file | peak RSS | steady RSS (after the cycles) | emergentd CPU per cycle, median [max] | heap after bootstrap | bytes per group | promsynth CPU, cold start |")
	p("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, r := range results {
		restart, restartCPU := "—", "—"
		if r.Reload != nil {
			restart, restartCPU = fmt.Sprintf("%.1f s", r.Reload.SinceStart), fmt.Sprintf("%.1f s", r.Reload.CPU)
		}
		peak := r.WorkerMem.PeakRSS // the cold start's; the restart's is in its own table
		cpu := summarize(r.Cycles, func(c cycleResult) float64 { return c.CPU })
		p("| %d | %.1f s | %.1f s | %s | %s | %s | %.0f MiB | %.0f MiB | %s [%s] | %.0f MiB | %s | %.1f s |", r.Groups, r.Bootstrap.SinceStart,
			r.Bootstrap.CPU, restart, restartCPU, bytesSI(float64(r.StateBytes)), float64(peak)/mib, float64(r.WorkerMem.RSS)/mib,
			ms(cpu.Median), ms(cpu.Max), float64(r.HeapAfterBootstrap)/mib, bytesSI(r.BytesPerGroup()), r.Bootstrap.PromCPU)
	}
}

// BytesPerGroup is the heap the bootstrap left per group.
func (r *scaleResult) BytesPerGroup() float64 {
	return float64(r.HeapAfterBootstrap) / float64(r.Groups)
}
