package sources

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/common/model"
)

// RecordingVersion is the version of the recording file format written by Record and the only
// one LoadRecording accepts.
const RecordingVersion = 1

// gzipMagic starts every gzip stream; recordings are gzip-compressed when they start with it.
var gzipMagic = []byte{0x1f, 0x8b}

// recordingFile is the on-disk format: the answers of range queries over one window, as
// Prometheus returned them.
type recordingFile struct {
	Version int                     `json:"version"`
	Start   time.Time               `json:"start"`
	End     time.Time               `json:"end"`
	Step    model.Duration          `json:"step"`
	Queries map[string]model.Matrix `json:"queries"`
	// Config is the emergentd configuration the recording was made for, so a replay needs
	// nothing but the file.
	Config string `json:"config,omitempty"`
}

// Recorded is a Source that replays recorded query results, for `emergentd replay`, backtests
// without Prometheus, and tests. It is safe for concurrent use; it never changes after loading.
type Recorded struct {
	start, end int64 // milliseconds since the epoch, inclusive
	step       int64 // milliseconds
	queries    map[string]model.Matrix
	config     string
}

// LoadRecording reads a recording file (plain or gzip-compressed JSON).
func LoadRecording(path string) (*Recorded, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("loading recording: %w", err)
	}
	defer f.Close()
	rec, err := ReadRecording(f)
	if err != nil {
		return nil, fmt.Errorf("recording %s: %w", path, err)
	}
	return rec, nil
}

// ReadRecording reads a recording (plain or gzip-compressed JSON, told apart by gzip's magic
// bytes) and validates it: version, window, step, and every sample inside the window and on
// its step grid.
func ReadRecording(r io.Reader) (*Recorded, error) {
	br := bufio.NewReader(r)
	var in io.Reader = br
	if magic, _ := br.Peek(len(gzipMagic)); bytes.Equal(magic, gzipMagic) {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("gzip: %w", err)
		}
		defer zr.Close()
		in = zr
	}
	dec := json.NewDecoder(in)
	dec.DisallowUnknownFields()
	var f recordingFile
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("decoding JSON: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("decoding JSON: unexpected data after the recording object")
	}
	return newRecorded(&f)
}

// newRecorded validates f and indexes it.
func newRecorded(f *recordingFile) (*Recorded, error) {
	if f.Version != RecordingVersion {
		return nil, fmt.Errorf("unsupported version %d (want %d)", f.Version, RecordingVersion)
	}
	step := time.Duration(f.Step)
	switch {
	case f.Start.IsZero():
		return nil, errors.New("start is missing")
	case f.End.IsZero():
		return nil, errors.New("end is missing")
	case step <= 0:
		return nil, fmt.Errorf("step %q must be positive", f.Step)
	case step%time.Millisecond != 0:
		return nil, fmt.Errorf("step %q must be a whole number of milliseconds", f.Step)
	case f.End.Before(f.Start):
		return nil, fmt.Errorf("end %s is before start %s", fmtTime(f.End), fmtTime(f.Start))
	case len(f.Queries) == 0:
		return nil, errors.New("no queries")
	}
	rec := &Recorded{
		// Milliseconds, as Prometheus keeps time: UnixNano overflows outside 1678–2262, and a
		// recording from year 1000 read as 2169 could not answer over its own range (fuzzing).
		start:   f.Start.UnixMilli(),
		end:     f.End.UnixMilli(),
		step:    step.Milliseconds(),
		queries: f.Queries,
		config:  f.Config,
	}
	for q, m := range f.Queries {
		if strings.TrimSpace(q) == "" {
			return nil, errors.New("empty query")
		}
		if err := rec.validate(m); err != nil {
			return nil, fmt.Errorf("query %q: %w", q, err)
		}
	}
	return rec, nil
}

// validate checks that m holds distinct series whose samples are sorted, inside the window
// and on its step grid, which is what Prometheus returns and what QueryRange relies on.
func (rec *Recorded) validate(m model.Matrix) error {
	seen := make(map[string]bool, len(m))
	for _, s := range m {
		if s == nil {
			return errors.New("null series")
		}
		name := s.Metric.String()
		if seen[name] {
			return fmt.Errorf("series %s appears twice", name)
		}
		seen[name] = true
		check := func(ts model.Time, prev *int64) error {
			t := int64(ts)
			switch {
			case t < rec.start || t > rec.end:
				return fmt.Errorf("series %s: sample at %s is outside the recording [%s, %s]",
					name, fmtTime(ts.Time()), fmtTime(model.Time(rec.start).Time()), fmtTime(model.Time(rec.end).Time()))
			case (t-rec.start)%rec.step != 0:
				return fmt.Errorf("series %s: sample at %s is not on the recording's %s step grid",
					name, fmtTime(ts.Time()), model.Duration(rec.step*int64(time.Millisecond)))
			case t <= *prev:
				return fmt.Errorf("series %s: sample at %s is out of order or repeated", name, fmtTime(ts.Time()))
			}
			*prev = t
			return nil
		}
		prev := rec.start - 1
		for _, v := range s.Values {
			if err := check(v.Timestamp, &prev); err != nil {
				return err
			}
		}
		prev = rec.start - 1
		for _, h := range s.Histograms {
			if err := check(h.Timestamp, &prev); err != nil {
				return err
			}
		}
	}
	return nil
}

// Range returns the recorded window and step.
func (rec *Recorded) Range() Range {
	return Range{
		Start: model.Time(rec.start).Time().UTC(),
		End:   model.Time(rec.end).Time().UTC(),
		Step:  time.Duration(rec.step) * time.Millisecond,
	}
}

// Queries returns the recorded queries, sorted.
func (rec *Recorded) Queries() []string {
	return slices.Sorted(maps.Keys(rec.queries))
}

// QueryRange answers from the recording. r.Step must be a multiple of the recorded step and
// r.Start on the recorded grid; the answer holds the recorded samples at r.Start + k·r.Step.
// Samples missing from the recording are absent, like gaps in Prometheus, and so are steps
// outside the recorded window, but a range entirely outside it is an error: it is almost
// always a replay of the wrong file or window. An unknown query is an error, never an empty
// result, so a changed rule cannot silently replay as "no data".
func (rec *Recorded) QueryRange(ctx context.Context, query string, r Range) (model.Matrix, Warnings, error) {
	m, start, end, step, err := rec.series(ctx, query, r)
	if err != nil {
		return nil, nil, err
	}
	keep := func(ts model.Time) bool {
		t := int64(ts)
		return t >= start && t <= end && (t-start)%step == 0
	}
	var out model.Matrix
	for _, s := range m {
		var values []model.SamplePair
		i := sort.Search(len(s.Values), func(i int) bool { return int64(s.Values[i].Timestamp) >= start })
		for ; i < len(s.Values) && int64(s.Values[i].Timestamp) <= end; i++ {
			if keep(s.Values[i].Timestamp) {
				values = append(values, s.Values[i])
			}
		}
		var histograms []model.SampleHistogramPair
		for _, h := range s.Histograms {
			if keep(h.Timestamp) {
				histograms = append(histograms, h)
			}
		}
		if len(values) == 0 && len(histograms) == 0 {
			continue // Prometheus omits series without samples in the range.
		}
		out = append(out, &model.SampleStream{Metric: maps.Clone(s.Metric), Values: values, Histograms: histograms})
	}
	return out, nil, nil
}

// QueryRangeStepAveraged answers from the recording with each point the mean of the recorded
// samples in the step it ends, (t - r.Step, t]: what the engine averages while evaluating, and
// what Prometheus answers with the query's ranges widened to the step. Histograms are left out.
func (rec *Recorded) QueryRangeStepAveraged(ctx context.Context, query string, r Range) (model.Matrix, Warnings, error) {
	m, start, end, step, err := rec.series(ctx, query, r)
	if err != nil {
		return nil, nil, err
	}
	var out model.Matrix
	for _, s := range m {
		var values []model.SamplePair
		i := sort.Search(len(s.Values), func(i int) bool { return int64(s.Values[i].Timestamp) > start-step })
		for t := start; t <= end; t += step {
			var sum float64
			var n int
			for ; i < len(s.Values) && int64(s.Values[i].Timestamp) <= t; i++ {
				sum += float64(s.Values[i].Value)
				n++
			}
			if n > 0 {
				values = append(values, model.SamplePair{Timestamp: model.Time(t), Value: model.SampleValue(sum / float64(n))})
			}
		}
		if len(values) > 0 {
			out = append(out, &model.SampleStream{Metric: maps.Clone(s.Metric), Values: values})
		}
	}
	return out, nil, nil
}

// series returns query's recorded series and r in milliseconds, checked against the recording.
func (rec *Recorded) series(ctx context.Context, query string, r Range) (m model.Matrix, start, end, step int64, err error) {
	if err := ctx.Err(); err != nil {
		return nil, 0, 0, 0, fmt.Errorf("query %q: %w", query, err)
	}
	if err := r.validate(); err != nil {
		return nil, 0, 0, 0, fmt.Errorf("query %q: %w", query, err)
	}
	m, ok := rec.queries[query]
	if !ok {
		return nil, 0, 0, 0, fmt.Errorf("query %q is not in the recording (it holds %d queries)", query, len(rec.queries))
	}
	recorded := rec.Range()
	start, end, step = r.Start.UnixMilli(), r.End.UnixMilli(), r.Step.Milliseconds()
	switch {
	case step%rec.step != 0:
		return nil, 0, 0, 0, fmt.Errorf("query %q: step %s is not a multiple of the recorded step %s", query, r.Step, recorded.Step)
	case (start-rec.start)%rec.step != 0:
		return nil, 0, 0, 0, fmt.Errorf("query %q: start %s is not on the recording's grid (%s + k·%s)",
			query, fmtTime(r.Start), fmtTime(recorded.Start), recorded.Step)
	case end < rec.start || start > rec.end:
		return nil, 0, 0, 0, fmt.Errorf("query %q: range [%s, %s] is outside the recording [%s, %s]",
			query, fmtTime(r.Start), fmtTime(r.End), fmtTime(recorded.Start), fmtTime(recorded.End))
	}
	return m, start, end, step, nil
}

// RecordOptions say how Record writes a recording.
type RecordOptions struct {
	Gzip bool
	// Config is the configuration text stored with the recording (optional).
	Config string
}

// Config returns the configuration text stored with the recording, or "".
func (rec *Recorded) Config() string { return rec.config }

// Record runs every query over r against src and writes a recording to w, gzip-compressed if
// opts.Gzip is set. Long ranges are fetched in chunks of at most MaxPointsPerSeries steps.
// A query answered with warnings fails the recording: a partial answer replayed later would
// look like the truth. PromQL info annotations are not warnings and are accepted.
func Record(ctx context.Context, src Source, queries []string, r Range, w io.Writer, opts RecordOptions) error {
	if err := r.validate(); err != nil {
		return fmt.Errorf("recording: %w", err)
	}
	if len(queries) == 0 {
		return errors.New("recording: no queries")
	}
	f := &recordingFile{
		Version: RecordingVersion,
		Start:   r.Start.UTC(),
		End:     r.End.UTC(),
		Step:    model.Duration(r.Step),
		Queries: make(map[string]model.Matrix, len(queries)),
		Config:  opts.Config,
	}
	for _, q := range queries {
		if _, done := f.Queries[q]; done {
			continue
		}
		m, err := fetchAll(ctx, src, q, r)
		if err != nil {
			return fmt.Errorf("recording: %w", err)
		}
		f.Queries[q] = m
	}
	// Never write a file that would not load.
	if _, err := newRecorded(f); err != nil {
		return fmt.Errorf("recording: source returned data that cannot be replayed: %w", err)
	}

	out := w
	var zw *gzip.Writer
	if opts.Gzip {
		zw = gzip.NewWriter(w)
		out = zw
	}
	enc := json.NewEncoder(out)
	if err := enc.Encode(f); err != nil {
		return fmt.Errorf("recording: writing: %w", err)
	}
	if zw != nil {
		if err := zw.Close(); err != nil {
			return fmt.Errorf("recording: writing: %w", err)
		}
	}
	return nil
}

// fetchAll runs query over r in chunks of at most MaxPointsPerSeries steps and joins the
// chunks' series.
func fetchAll(ctx context.Context, src Source, query string, r Range) (model.Matrix, error) {
	byMetric := map[string]*model.SampleStream{}
	var order []string
	for from := r.Start; !from.After(r.End); {
		to := r.End
		if int64(r.End.Sub(from)/r.Step) >= MaxPointsPerSeries {
			to = from.Add(time.Duration(MaxPointsPerSeries-1) * r.Step)
		}
		m, warnings, err := src.QueryRange(ctx, query, Range{Start: from, End: to, Step: r.Step})
		if err != nil {
			return nil, fmt.Errorf("[%s, %s]: %w", fmtTime(from), fmtTime(to), err)
		}
		if w := realWarnings(warnings); len(w) > 0 {
			return nil, fmt.Errorf("query %q [%s, %s]: partial result: %s", query, fmtTime(from), fmtTime(to), strings.Join(w, "; "))
		}
		for _, s := range m {
			if s == nil {
				continue
			}
			key := s.Metric.String()
			joined, ok := byMetric[key]
			if !ok {
				joined = &model.SampleStream{Metric: s.Metric}
				byMetric[key] = joined
				order = append(order, key)
			}
			joined.Values = append(joined.Values, s.Values...)
			joined.Histograms = append(joined.Histograms, s.Histograms...)
		}
		from = to.Add(r.Step)
	}
	out := make(model.Matrix, 0, len(order))
	for _, k := range order {
		out = append(out, byMetric[k])
	}
	sort.Sort(out) // deterministic files: series ordered by labels
	return out, nil
}

// realWarnings drops PromQL info annotations, which older Prometheus versions sent as
// warnings ("PromQL info: metric might not be a counter"); they are advice, not missing data.
func realWarnings(ws Warnings) []string {
	var out []string
	for _, w := range ws {
		if !strings.HasPrefix(strings.ToLower(w), "promql info") {
			out = append(out, w)
		}
	}
	return out
}
