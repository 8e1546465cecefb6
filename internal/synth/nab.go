package synth

import (
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// NAB is one series of the Numenta Anomaly Benchmark (github.com/numenta/NAB): counts per bucket
// of real demand, with NAB's labelled anomaly windows. Benchmarks use it as the inbound traffic
// of a healthy service, so every window is an external event a detector of self-generated
// traffic must stay silent through.
type NAB struct {
	// File is the CSV file name, e.g. "nyc_taxi.csv".
	File string
	// Times and Values are the buckets in time order: Values[i] counts what happened in the
	// bucket that starts at Times[i].
	Times  []time.Time
	Values []float64
	// Bucket is the bucket width (the step between timestamps: 30 min for nyc_taxi).
	Bucket time.Duration
	// Windows are NAB's labelled anomaly windows, in time order.
	Windows []Window

	median float64 // per second, computed once
}

// Window is a labelled time range [Start, End].
type Window struct {
	Start, End time.Time
}

// nabTimeLayout is how NAB writes timestamps (UTC, no zone).
const nabTimeLayout = "2006-01-02 15:04:05"

// ErrNABMissing reports that the NAB data directory or one of its files is absent.
var ErrNABMissing = errors.New("NAB data not found")

// LoadNAB reads dir/file (a NAB CSV "timestamp,value") and its windows from
// dir/combined_windows.json, whose keys are "<category>/<file>".
func LoadNAB(dir, file string) (*NAB, error) {
	f, err := os.Open(filepath.Join(dir, file))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%w: %s (the benchmark reads ../shared/data/nab/ next to the repository)", ErrNABMissing, filepath.Join(dir, file))
		}
		return nil, fmt.Errorf("nab: %w", err)
	}
	defer f.Close()
	n, err := readNABCSV(f, file)
	if err != nil {
		return nil, err
	}
	raw, err := os.ReadFile(filepath.Join(dir, "combined_windows.json"))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%w: %s", ErrNABMissing, filepath.Join(dir, "combined_windows.json"))
		}
		return nil, fmt.Errorf("nab: %w", err)
	}
	var all map[string][][2]string
	if err := json.Unmarshal(raw, &all); err != nil {
		return nil, fmt.Errorf("nab: combined_windows.json: %w", err)
	}
	found := false
	for key, ws := range all {
		if key != file && !strings.HasSuffix(key, "/"+file) {
			continue
		}
		found = true
		for _, w := range ws {
			start, err1 := time.Parse(nabTimeLayout, strings.TrimSuffix(w[0], ".000000"))
			end, err2 := time.Parse(nabTimeLayout, strings.TrimSuffix(w[1], ".000000"))
			if err := errors.Join(err1, err2); err != nil {
				return nil, fmt.Errorf("nab: combined_windows.json %s: %w", key, err)
			}
			n.Windows = append(n.Windows, Window{Start: start, End: end})
		}
	}
	if !found {
		return nil, fmt.Errorf("nab: combined_windows.json has no windows for %s", file)
	}
	sort.Slice(n.Windows, func(i, j int) bool { return n.Windows[i].Start.Before(n.Windows[j].Start) })
	return n, nil
}

func readNABCSV(r io.Reader, file string) (*NAB, error) {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = 2
	n := &NAB{File: file}
	for line := 1; ; line++ {
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("nab: %s: %w", file, err)
		}
		if line == 1 && rec[0] == "timestamp" {
			continue
		}
		t, err := time.Parse(nabTimeLayout, rec[0])
		if err != nil {
			return nil, fmt.Errorf("nab: %s:%d: %w", file, line, err)
		}
		v, err := strconv.ParseFloat(rec[1], 64)
		if err != nil || math.IsNaN(v) || v < 0 {
			return nil, fmt.Errorf("nab: %s:%d: bad value %q", file, line, rec[1])
		}
		if k := len(n.Times); k > 0 && !t.After(n.Times[k-1]) {
			return nil, fmt.Errorf("nab: %s:%d: timestamp %s not after the previous one", file, line, rec[0])
		}
		n.Times = append(n.Times, t)
		n.Values = append(n.Values, v)
	}
	if len(n.Times) < 2 {
		return nil, fmt.Errorf("nab: %s: fewer than two samples", file)
	}
	// The bucket is the most common spacing: NAB series have the odd missing bucket.
	counts := map[time.Duration]int{}
	for i := 1; i < len(n.Times); i++ {
		counts[n.Times[i].Sub(n.Times[i-1])]++
	}
	best := 0
	for d, c := range counts {
		if c > best || (c == best && d < n.Bucket) {
			n.Bucket, best = d, c
		}
	}
	return n, nil
}

// Start and End bound the series: the first bucket's start and the last bucket's end.
func (n *NAB) Start() time.Time { return n.Times[0] }

// End is the end of the last bucket.
func (n *NAB) End() time.Time { return n.Times[len(n.Times)-1].Add(n.Bucket) }

// RateAt returns the per-second rate at t (in the series' own time), interpolated linearly
// between bucket midpoints, so a 30-minute series can drive a 30-second scrape. Outside the
// series it is NaN. A gap of more than two buckets is NaN too: NAB does not say what happened.
func (n *NAB) RateAt(t time.Time) float64 {
	half := n.Bucket / 2
	mid := t.Add(-half) // bucket i's midpoint is Times[i]+half
	i := sort.Search(len(n.Times), func(i int) bool { return n.Times[i].After(mid) }) - 1
	perSec := func(k int) float64 { return n.Values[k] / n.Bucket.Seconds() }
	switch {
	case t.Before(n.Start()) || !t.Before(n.End()):
		return math.NaN()
	case i < 0:
		return perSec(0)
	case i >= len(n.Times)-1:
		return perSec(len(n.Times) - 1)
	}
	gap := n.Times[i+1].Sub(n.Times[i])
	if gap > 2*n.Bucket {
		return math.NaN()
	}
	frac := float64(mid.Sub(n.Times[i])) / float64(gap)
	return perSec(i)*(1-frac) + perSec(i+1)*frac
}

// Median returns the median per-second rate over the series.
func (n *NAB) Median() float64 {
	if n.median == 0 {
		vs := append([]float64(nil), n.Values...)
		sort.Float64s(vs)
		n.median = vs[len(vs)/2] / n.Bucket.Seconds()
	}
	return n.median
}
