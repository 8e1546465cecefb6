package bench

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/emergent-sh/emergent/internal/synth"
)

// GenerateOptions say what dataset to write.
type GenerateOptions struct {
	Seed uint64
	// Days of data; the first 3/8 of them (one to three days) are history only, never scored.
	Days int
	// Services is the number of synthetic services; the scenario mix is scaled to it.
	Services int
	// Step is the scrape interval of the data (30 s).
	Step time.Duration
	// End is the last sample's time (aligned down to Step); the zero value means DefaultEnd.
	End time.Time
	// NABDir holds the NAB files; empty skips the real-traffic track.
	NABDir string
	// NABWindowsPerFile caps the NAB windows used as controls per file (0: all of them).
	NABWindowsPerFile int
	// NABIncidentsPerFile is how many services per NAB file get an injected incident.
	NABIncidentsPerFile int
}

// ShortOptions is CI's short form: two days at 30 s, about twenty services.
func ShortOptions(seed uint64, nabDir string) GenerateOptions {
	return GenerateOptions{Seed: seed, Days: 2, Services: 16, Step: 30 * time.Second, NABDir: nabDir, NABWindowsPerFile: 1, NABIncidentsPerFile: 1}
}

// FullOptions is the full form: eight days at 30 s, 64 synthetic services plus every NAB window.
func FullOptions(seed uint64, nabDir string) GenerateOptions {
	return GenerateOptions{Seed: seed, Days: 8, Services: 64, Step: 30 * time.Second, NABDir: nabDir, NABIncidentsPerFile: 2}
}

// Incident is one line of truth.jsonl: an anomaly a detector must find.
type Incident struct {
	Kind    string    `json:"kind"`
	Service string    `json:"service"`
	Start   time.Time `json:"start"`
	End     time.Time `json:"end"`
	// Scenario says which generator made it (frag_busy, flush_storm_high, nab+replica_creep...).
	Scenario string `json:"scenario"`
	// Defined is when the incident first meets its kind's definition: the third flush within
	// ten minutes for a flush storm (one flush is an event, min_flushes within window a storm), the
	// onset for self-generated traffic. No detector can be earlier without guessing.
	Defined time.Time `json:"defined"`
}

// ControlEvent is one line of controls.jsonl: a span a correct detector stays silent through
// (a surge and the 15 minutes after it, a NAB window, a Redis restart and its rebuild).
type ControlEvent struct {
	Type    string    `json:"type"`
	Service string    `json:"service"`
	Start   time.Time `json:"start"`
	End     time.Time `json:"end"`
}

// ServiceInfo describes one service of a dataset.
type ServiceInfo struct {
	Name     string            `json:"name"`
	Scenario string            `json:"scenario"`
	Kind     string            `json:"kind,omitempty"` // incident kind; empty for controls
	Params   map[string]string `json:"params"`
}

// Dataset is dataset.json: what was generated, over which range, and what is scored.
type Dataset struct {
	Seed     uint64        `json:"seed"`
	Start    time.Time     `json:"start"`
	End      time.Time     `json:"end"`
	Step     Duration      `json:"step"`
	EvalFrom time.Time     `json:"eval_from"` // scoring covers [EvalFrom, End]
	Services []ServiceInfo `json:"services"`
	// Files are the OpenMetrics files, one per two-hour TSDB block, relative to the dataset dir.
	Files   []string `json:"files"`
	Samples int64    `json:"samples"`
	Bytes   int64    `json:"bytes"`
	// Notes say where the dataset departs from its plan (a NAB window cut short).
	Notes     []string       `json:"notes,omitempty"`
	Incidents []Incident     `json:"-"`
	Controls  []ControlEvent `json:"-"`
}

// EvalDays is the length of the scored range in days.
func (d *Dataset) EvalDays() float64 { return d.End.Sub(d.EvalFrom).Hours() / 24 }

// Duration is a time.Duration that reads and writes as "30s" in JSON.
type Duration time.Duration

// MarshalJSON writes the duration as a Go duration string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON reads a Go duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := time.ParseDuration(s)
	*d = Duration(v)
	return err
}

type generator struct {
	opts                 GenerateOptions
	step                 time.Duration
	start, end, evalFrom time.Time
	services             []*service
	nabFiles             []*synth.NAB
	usedNames            map[string]bool
	notes                []string
}

// fullMix is the scenario mix of 64 synthetic services; smaller datasets scale it down.
var fullMix = []struct {
	scenario string
	n        int
}{
	{ScenarioFragBusy, 8}, {ScenarioFragIdle, 6}, {ScenarioCreep, 6},
	{ScenarioStormLow, 4}, {ScenarioStormMedium, 4}, {ScenarioStormHigh, 4},
	{ControlSteady, 3}, {ControlDiurnal, 4}, {ControlSurge, 7}, {ControlDeploy, 5},
	{ControlRedisRestart, 4}, {ControlMaintenanceFlush, 4}, {ControlScrapeGap, 3}, {ControlCounterReset, 2},
}

// mix scales fullMix to n services: every scenario at least once, the rest in proportion.
func mix(n int) []string {
	total := 0
	for _, m := range fullMix {
		total += m.n
	}
	counts := make([]int, len(fullMix))
	left := n
	for i, m := range fullMix {
		counts[i] = max(1, int(math.Floor(float64(m.n*n)/float64(total))))
		left -= counts[i]
	}
	// Hand out (or take back) the rounding remainder in mix order, largest share first.
	for i := 0; left != 0 && i < 10*len(fullMix); i++ {
		k := i % len(fullMix)
		switch {
		case left > 0:
			counts[k]++
			left--
		case counts[k] > 1:
			counts[k]--
			left++
		}
	}
	var out []string
	for i, m := range fullMix {
		for range counts[i] {
			out = append(out, m.scenario)
		}
	}
	return out
}

// nabFileNames are the NAB series of ../shared/data/nab.
var nabFileNames = []string{"elb_request_count_8c0756.csv", "Twitter_volume_AAPL.csv", "nyc_taxi.csv"}

var nabShort = map[string]string{
	"elb_request_count_8c0756.csv": "elb",
	"Twitter_volume_AAPL.csv":      "twitter",
	"nyc_taxi.csv":                 "nyctaxi",
}

// DefaultEnd is where datasets end unless told otherwise: the most recent Monday 00:00 UTC.
// That is recent enough for Prometheus to keep the backfill (its retention counts from the
// newest block) and fixed for a week at a time, so every run of a seed measures the same data:
// the same weekdays, the same times of day.
func DefaultEnd(now time.Time) time.Time {
	now = now.UTC()
	midnight := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.UTC)
	return midnight.AddDate(0, 0, -((int(midnight.Weekday()) + 6) % 7))
}

func newGenerator(opts GenerateOptions) (*generator, error) {
	if opts.Days < 2 {
		return nil, fmt.Errorf("generate: --days must be at least 2 (one of history, one scored), got %d", opts.Days)
	}
	if opts.Services < 1 {
		return nil, fmt.Errorf("generate: --services must be at least 1")
	}
	if opts.Step <= 0 {
		opts.Step = 30 * time.Second
	}
	end := opts.End
	if end.IsZero() {
		end = DefaultEnd(time.Now())
	}
	end = end.UTC().Truncate(opts.Step)
	g := &generator{opts: opts, step: opts.Step, end: end, usedNames: map[string]bool{}}
	g.start = end.Add(-time.Duration(opts.Days) * 24 * time.Hour)
	// History before scoring: a day for two-day sets (learned ratios need an hour, seasonal
	// inbound three days), three days from eight on.
	warm := time.Duration(math.Round(float64(opts.Days)*3/8)) * 24 * time.Hour
	warm = min(max(warm, 24*time.Hour), 3*24*time.Hour)
	g.evalFrom = g.start.Add(warm)
	if opts.NABDir != "" {
		for _, f := range nabFileNames {
			n, err := synth.LoadNAB(opts.NABDir, f)
			if err != nil {
				return nil, err
			}
			g.nabFiles = append(g.nabFiles, n)
		}
	}
	return g, nil
}

func (g *generator) name(prefix string) string {
	for i := 1; ; i++ {
		n := fmt.Sprintf("%s-%02d", strings.ReplaceAll(prefix, "_", "-"), i)
		if !g.usedNames[n] {
			g.usedNames[n] = true
			return n
		}
	}
}

// build draws every service of the dataset.
func (g *generator) build() {
	for _, sc := range mix(g.opts.Services) {
		s := g.newService(g.name(sc), sc)
		g.applyScenario(s, nil)
		g.services = append(g.services, s)
	}
	for _, n := range g.nabFiles {
		g.buildNAB(n)
	}
}

// buildNAB adds a control service per labelled window (placed inside the scored range), and
// services with an incident injected into the same real traffic away from the windows.
func (g *generator) buildNAB(n *synth.NAB) {
	short := nabShort[n.File]
	windows := n.Windows
	if g.opts.NABWindowsPerFile > 0 && len(windows) > g.opts.NABWindowsPerFile {
		windows = windows[:g.opts.NABWindowsPerFile]
	}
	for i, w := range windows {
		name := "nab-" + short + "-w" + strconv.Itoa(i+1)
		g.usedNames[name] = true
		s := g.newService(name, ControlNAB)
		// The window starts an hour into the scored range at the earliest and ends by its end
		// when it fits; windows longer than the scored range are cut at its end. Any shift keeps
		// the series' own daily period, which is what seasonal baselines learn.
		at := s.d.within(g.evalFrom.Add(time.Hour), g.end.Add(-30*time.Minute), w.End.Sub(w.Start)).Truncate(time.Minute)
		g.placeNAB(s, n, at.Sub(w.Start))
		from, to := w.Start.Add(s.nabShift), w.End.Add(s.nabShift)
		if to.After(g.end) {
			to = g.end
			g.notes = append(g.notes, fmt.Sprintf("NAB %s window %d is longer than the scored range: cut at its end", short, i+1))
		}
		s.addControl(ControlNAB, from, to)
		s.param("nab_window", fmt.Sprintf("%s – %s", w.Start.Format(nabDisplay), w.End.Format(nabDisplay)))
		g.applyScenario(s, nil)
		g.services = append(g.services, s)
	}
	incidents := []string{ScenarioFragBusy, ScenarioCreep, ScenarioStormMedium, ScenarioStormLow, ScenarioStormHigh}
	for i := range g.opts.NABIncidentsPerFile {
		d := newDraw(g.opts.Seed, "nab-incident-"+short+strconv.Itoa(i))
		sc := "nab+" + incidents[d.intn(0, len(incidents)-1)]
		s := g.newService(g.name("nab-"+short+"-"+strings.TrimPrefix(sc, "nab+")), sc)
		// Any shift that covers the whole dataset with real data.
		lo, hi := g.end.Sub(n.End()), g.start.Sub(n.Start())
		shift := lo
		if hi > lo {
			shift = lo + s.d.duration(0, hi-lo)
		}
		g.placeNAB(s, n, shift.Truncate(time.Minute))
		var avoid []span
		for _, w := range n.Windows {
			avoid = append(avoid, span{w.Start.Add(s.nabShift), w.End.Add(s.nabShift)})
		}
		g.applyScenario(s, avoid)
		g.services = append(g.services, s)
	}
}

const nabDisplay = "2006-01-02 15:04"

func (g *generator) placeNAB(s *service, n *synth.NAB, shift time.Duration) {
	s.nab, s.nabShift = n, shift
	s.nabScale = s.d.logUniform(2, 40) / n.Median()
	// Data exists where NAB has it (shifted), inside the dataset.
	from, to := n.Start().Add(shift), n.End().Add(shift)
	if from.Before(s.live.From) {
		from = s.live.From
	}
	if to.After(s.live.To) {
		to = s.live.To
	}
	s.live = span{from.Truncate(g.step), to}
	for i := range s.pods {
		s.pods[i].alive = s.live
	}
	s.param("nab_shift", fmt.Sprintf("%.1fd", shift.Hours()/24))
}

// Generate writes a dataset into dir: OpenMetrics files (one per two-hour block, under
// openmetrics/), truth.jsonl, controls.jsonl and dataset.json.
func Generate(opts GenerateOptions, dir string) (*Dataset, error) {
	g, err := newGenerator(opts)
	if err != nil {
		return nil, err
	}
	g.build()
	ds := &Dataset{Seed: opts.Seed, Start: g.start, End: g.end, Step: Duration(g.step), EvalFrom: g.evalFrom, Notes: g.notes}
	for _, s := range g.services {
		ds.Services = append(ds.Services, ServiceInfo{Name: s.Name, Scenario: s.Scenario, Kind: scenarioKind(s.Scenario), Params: s.params})
		ds.Incidents = append(ds.Incidents, s.incidents...)
		ds.Controls = append(ds.Controls, s.controls...)
	}
	sort.SliceStable(ds.Incidents, func(i, j int) bool { return ds.Incidents[i].Start.Before(ds.Incidents[j].Start) })
	if err := os.MkdirAll(filepath.Join(dir, "openmetrics"), 0o755); err != nil {
		return nil, fmt.Errorf("generate: %w", err)
	}
	if err := g.writeOpenMetrics(dir, ds); err != nil {
		return nil, err
	}
	if err := writeJSONLines(filepath.Join(dir, "truth.jsonl"), ds.Incidents); err != nil {
		return nil, err
	}
	if err := writeJSONLines(filepath.Join(dir, "controls.jsonl"), ds.Controls); err != nil {
		return nil, err
	}
	meta, err := json.MarshalIndent(ds, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "dataset.json"), append(meta, '\n'), 0o644); err != nil {
		return nil, fmt.Errorf("generate: %w", err)
	}
	return ds, nil
}

func writeJSONLines[T any](path string, items []T) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("generate: %w", err)
	}
	enc := json.NewEncoder(f)
	for _, it := range items {
		if err := enc.Encode(it); err != nil {
			f.Close()
			return fmt.Errorf("generate: %s: %w", path, err)
		}
	}
	return f.Close()
}

// blockSpan is promtool's block length: `promtool tsdb create-blocks-from openmetrics` reads the
// whole input once per two-hour block it covers (2.42 has no --max-block-duration), so one
// file per block makes the import linear in the data instead of quadratic: measured on this
// machine, 1.7 M samples over two days took 21 s as one file.
const blockSpan = 2 * time.Hour

// writeOpenMetrics writes the samples of each two-hour block to its own file, every metric
// family contiguous, every series in time order, each file ending with "# EOF".
func (g *generator) writeOpenMetrics(dir string, ds *Dataset) error {
	var all []series
	for _, s := range g.services {
		all = append(all, s.series(g.opts.Seed)...)
	}
	// Family order, then generation order inside a family.
	sort.SliceStable(all, func(i, j int) bool { return all[i].family < all[j].family })
	steps := int(g.end.Sub(g.start)/g.step) + 1
	at := func(i int) time.Time { return g.start.Add(time.Duration(i) * g.step) }
	buf := make([]byte, 0, 256)
	for i := 0; i < steps; {
		blockStart := at(i).Truncate(blockSpan)
		j := i
		for j < steps && at(j).Before(blockStart.Add(blockSpan)) {
			j++
		}
		name := filepath.Join("openmetrics", fmt.Sprintf("%d.om", blockStart.Unix()))
		f, err := os.Create(filepath.Join(dir, name))
		if err != nil {
			return fmt.Errorf("generate: %w", err)
		}
		w := bufio.NewWriterSize(f, 1<<20)
		last := ""
		var written int64
		for _, s := range all {
			if s.family != last {
				w.WriteString("# TYPE " + s.family + " unknown\n")
				last = s.family
			}
			for k := i; k < j; k++ {
				t := at(k)
				v, ok := s.sample(k, t)
				if !ok {
					continue
				}
				buf = append(buf[:0], s.family...)
				buf = append(buf, s.labels...)
				buf = append(buf, ' ')
				buf = strconv.AppendFloat(buf, v, 'f', -1, 64)
				buf = append(buf, ' ')
				buf = strconv.AppendInt(buf, t.Unix(), 10)
				buf = append(buf, '\n')
				w.Write(buf)
				written += int64(len(buf))
				ds.Samples++
			}
		}
		w.WriteString("# EOF\n")
		err = errors.Join(w.Flush(), f.Close())
		if err != nil {
			return fmt.Errorf("generate: %s: %w", name, err)
		}
		ds.Bytes += written
		ds.Files = append(ds.Files, name)
		i = j
	}
	return nil
}

// LoadDataset reads a dataset directory written by Generate.
func LoadDataset(dir string) (*Dataset, error) {
	raw, err := os.ReadFile(filepath.Join(dir, "dataset.json"))
	if err != nil {
		return nil, fmt.Errorf("dataset: %w", err)
	}
	ds := &Dataset{}
	if err := json.Unmarshal(raw, ds); err != nil {
		return nil, fmt.Errorf("dataset: %s: %w", filepath.Join(dir, "dataset.json"), err)
	}
	if ds.Incidents, err = readJSONLines[Incident](filepath.Join(dir, "truth.jsonl")); err != nil {
		return nil, err
	}
	if ds.Controls, err = readJSONLines[ControlEvent](filepath.Join(dir, "controls.jsonl")); err != nil {
		return nil, err
	}
	return ds, nil
}

func readJSONLines[T any](path string) ([]T, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("dataset: %w", err)
	}
	defer f.Close()
	var out []T
	dec := json.NewDecoder(f)
	dec.DisallowUnknownFields()
	for dec.More() {
		var v T
		if err := dec.Decode(&v); err != nil {
			return nil, fmt.Errorf("dataset: %s: %w", path, err)
		}
		out = append(out, v)
	}
	return out, nil
}
