// Package synth writes synthetic metric histories as OpenMetrics text with timestamps, for
// backfilling a real Prometheus (`promtool tsdb create-blocks-from openmetrics`) in tests and
// benchmarks. Counters are integrated from rate functions, so scenarios are written as rates.
package synth

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"sort"
	"strings"
	"time"
)

// Writer accumulates series sampled every Step over [Start, End].
type Writer struct {
	Start, End time.Time
	Step       time.Duration
	series     []series
}

type series struct {
	name   string
	labels string
	values []float64 // NaN: no sample at that step
}

// Steps is the number of samples per series.
func (w *Writer) Steps() int { return int(w.End.Sub(w.Start)/w.Step) + 1 }

// At returns the time of step i.
func (w *Writer) At(i int) time.Time { return w.Start.Add(time.Duration(i) * w.Step) }

func labelString(labels map[string]string) string {
	keys := make([]string, 0, len(labels))
	for k := range labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%q", k, labels[k])
	}
	return "{" + strings.Join(parts, ",") + "}"
}

// Counter adds a counter that grows at rate(t) per second (NaN rate: the series is absent at t,
// and the counter keeps its value for when it comes back).
func (w *Writer) Counter(name string, labels map[string]string, rate func(t time.Time) float64) {
	vals := make([]float64, w.Steps())
	total := 0.0
	for i := range vals {
		r := rate(w.At(i))
		if math.IsNaN(r) {
			vals[i] = math.NaN()
			continue
		}
		if i > 0 {
			total += math.Max(0, r) * w.Step.Seconds()
		}
		vals[i] = math.Round(total)
	}
	w.series = append(w.series, series{name: name, labels: labelString(labels), values: vals})
}

// Gauge adds a gauge with value fn(t) (NaN: absent).
func (w *Writer) Gauge(name string, labels map[string]string, fn func(t time.Time) float64) {
	vals := make([]float64, w.Steps())
	for i := range vals {
		vals[i] = fn(w.At(i))
	}
	w.series = append(w.series, series{name: name, labels: labelString(labels), values: vals})
}

// Raw adds a series with the given value at each step (NaN: absent).
func (w *Writer) Raw(name string, labels map[string]string, values []float64) {
	w.series = append(w.series, series{name: name, labels: labelString(labels), values: values})
}

// WriteOpenMetrics writes every series, grouped by metric name, ending with # EOF.
func (w *Writer) WriteOpenMetrics(out io.Writer) error {
	bw := bufio.NewWriter(out)
	sort.SliceStable(w.series, func(i, j int) bool { return w.series[i].name < w.series[j].name })
	last := ""
	for _, s := range w.series {
		if s.name != last {
			fmt.Fprintf(bw, "# TYPE %s unknown\n", s.name)
			last = s.name
		}
		for i, v := range s.values {
			if math.IsNaN(v) {
				continue
			}
			fmt.Fprintf(bw, "%s%s %g %d\n", s.name, s.labels, v, w.At(i).Unix())
		}
	}
	fmt.Fprintln(bw, "# EOF")
	return bw.Flush()
}

// Diurnal is a daily demand curve: base at night rising to peak in the afternoon.
func Diurnal(base, peak float64) func(t time.Time) float64 {
	return func(t time.Time) float64 {
		h := float64(t.Hour()) + float64(t.Minute())/60
		return base + (peak-base)*0.5*(1-math.Cos(2*math.Pi*(h-3)/24))
	}
}

// Between returns in inside [from, to) and out elsewhere.
func Between(from, to time.Time, in, out func(t time.Time) float64) func(t time.Time) float64 {
	return func(t time.Time) float64 {
		if !t.Before(from) && t.Before(to) {
			return in(t)
		}
		return out(t)
	}
}

// Const returns a constant rate function.
func Const(v float64) func(time.Time) float64 { return func(time.Time) float64 { return v } }

// Scale multiplies a rate function.
func Scale(f func(time.Time) float64, k float64) func(time.Time) float64 {
	return func(t time.Time) float64 { return k * f(t) }
}
