package sources

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/common/model"
)

// sourceFunc adapts a function to Source.
type sourceFunc func(ctx context.Context, query string, r Range) (model.Matrix, Warnings, error)

func (f sourceFunc) QueryRange(ctx context.Context, query string, r Range) (model.Matrix, Warnings, error) {
	return f(ctx, query, r)
}

// synthetic answers like Prometheus over a fixed data set: for every query two series, "a"
// with a sample at every step and "b" with a gap at every 7th step. The value encodes the
// query, series and time so any misplaced sample shows.
type synthetic struct {
	mu     sync.Mutex
	ranges []Range
}

func syntheticValue(query, series string, t model.Time) (model.SampleValue, bool) {
	if series == "b" && (int64(t)/1000)%7 == 0 {
		return 0, false
	}
	v := float64(int64(t)/1000) + float64(len(query))/100
	if series == "b" {
		v = -v
	}
	return model.SampleValue(v), true
}

func (s *synthetic) QueryRange(_ context.Context, query string, r Range) (model.Matrix, Warnings, error) {
	if err := r.validate(); err != nil {
		return nil, nil, err
	}
	if n := r.steps(); n > MaxPointsPerSeries {
		return nil, nil, fmt.Errorf("exceeded maximum resolution of 11,000 points per timeseries (%d)", n)
	}
	s.mu.Lock()
	s.ranges = append(s.ranges, r)
	s.mu.Unlock()
	var m model.Matrix
	for _, name := range []string{"a", "b"} {
		ss := &model.SampleStream{Metric: model.Metric{"series": model.LabelValue(name)}}
		for t := r.Start; !t.After(r.End); t = t.Add(r.Step) {
			ts := model.TimeFromUnixNano(t.UnixNano())
			if v, ok := syntheticValue(query, name, ts); ok {
				ss.Values = append(ss.Values, model.SamplePair{Timestamp: ts, Value: v})
			}
		}
		m = append(m, ss)
	}
	return m, nil, nil
}

// want is what a query over r should return from a recording of synthetic data made over rec.
func (s *synthetic) want(query string, rec, r Range) model.Matrix {
	var m model.Matrix
	for _, name := range []string{"a", "b"} {
		ss := &model.SampleStream{Metric: model.Metric{"series": model.LabelValue(name)}}
		for t := r.Start; !t.After(r.End); t = t.Add(r.Step) {
			if t.Before(rec.Start) || t.After(rec.End) {
				continue
			}
			ts := model.TimeFromUnixNano(t.UnixNano())
			if v, ok := syntheticValue(query, name, ts); ok {
				ss.Values = append(ss.Values, model.SamplePair{Timestamp: ts, Value: v})
			}
		}
		if len(ss.Values) > 0 {
			m = append(m, ss)
		}
	}
	return m
}

func TestRecordRoundTrip(t *testing.T) {
	queries := []string{`sum by (service) (rate(token_mint_count[5m]))`, `sum(redis_db_keys)`, `sum(redis_db_keys)`}
	// 12 000 steps of 15 s: two chunks per query, the second short.
	start := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	rec := Range{Start: start, End: start.Add(11999 * 15 * time.Second), Step: 15 * time.Second}

	for _, gzipped := range []bool{false, true} {
		t.Run(fmt.Sprintf("gzip=%v", gzipped), func(t *testing.T) {
			src := &synthetic{}
			var buf bytes.Buffer
			if err := Record(context.Background(), src, queries, rec, &buf, RecordOptions{Gzip: gzipped}); err != nil {
				t.Fatalf("Record: %v", err)
			}
			if isGzip := bytes.HasPrefix(buf.Bytes(), gzipMagic); isGzip != gzipped {
				t.Errorf("file starts with gzip magic: %v, want %v", isGzip, gzipped)
			}
			// Each distinct query fetched in chunks of at most MaxPointsPerSeries steps that
			// tile the range exactly.
			if len(src.ranges) != 4 {
				t.Errorf("source got %d range queries, want 4 (2 queries × 2 chunks): %v", len(src.ranges), src.ranges)
			}
			for _, r := range src.ranges {
				if r.steps() > MaxPointsPerSeries {
					t.Errorf("chunk %v has %d steps, more than %d", r, r.steps(), MaxPointsPerSeries)
				}
			}
			if got := src.ranges[0]; !got.Start.Equal(rec.Start) || got.steps() != MaxPointsPerSeries {
				t.Errorf("first chunk %v, want %d steps from the start", got, MaxPointsPerSeries)
			}
			if got := src.ranges[1]; !got.Start.Equal(src.ranges[0].End.Add(rec.Step)) || !got.End.Equal(rec.End) {
				t.Errorf("second chunk %v does not continue the first %v up to the end", got, src.ranges[0])
			}

			r, err := ReadRecording(&buf)
			if err != nil {
				t.Fatalf("ReadRecording: %v", err)
			}
			if got := r.Range(); !reflect.DeepEqual(got, Range{Start: rec.Start, End: rec.End, Step: rec.Step}) {
				t.Errorf("Range() = %v, want %v", got, rec)
			}
			if got, want := r.Queries(), []string{queries[0], queries[1]}; !reflect.DeepEqual(got, want) {
				t.Errorf("Queries() = %q, want %q", got, want)
			}

			mid := rec.Start.Add(6000 * rec.Step)
			tests := []struct {
				name string
				r    Range
			}{
				{"whole range", rec},
				{"sub-range", Range{Start: mid, End: mid.Add(100 * rec.Step), Step: rec.Step}},
				{"single step", Range{Start: mid, End: mid, Step: rec.Step}},
				{"coarser step", Range{Start: rec.Start, End: rec.End, Step: 4 * rec.Step}},
				{"coarser step, offset start", Range{Start: mid.Add(rec.Step), End: mid.Add(200 * rec.Step), Step: 7 * rec.Step}},
				{"coarser step, end off its grid", Range{Start: mid, End: mid.Add(10*rec.Step + rec.Step), Step: 2 * rec.Step}},
				{"starts before the recording", Range{Start: rec.Start.Add(-10 * rec.Step), End: rec.Start.Add(10 * rec.Step), Step: rec.Step}},
				{"ends after the recording", Range{Start: rec.End.Add(-10 * rec.Step), End: rec.End.Add(10 * rec.Step), Step: 2 * rec.Step}},
			}
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					for _, q := range queries[:2] {
						got, warnings, err := r.QueryRange(context.Background(), q, tt.r)
						if err != nil {
							t.Fatalf("QueryRange(%q): %v", q, err)
						}
						if warnings != nil {
							t.Errorf("warnings %q, want none", warnings)
						}
						if want := src.want(q, rec, tt.r); !matrixEqual(got, want) {
							t.Errorf("QueryRange(%q, %v):\n got %v\nwant %v", q, tt.r, got, want)
						}
					}
				})
			}
		})
	}
}

// matrixEqual compares matrices sample by sample, with NaN equal to NaN.
func matrixEqual(a, b model.Matrix) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !a[i].Metric.Equal(b[i].Metric) || len(a[i].Values) != len(b[i].Values) {
			return false
		}
		for j := range a[i].Values {
			if !a[i].Values[j].Equal(&b[i].Values[j]) {
				return false
			}
		}
	}
	return true
}

func TestRecordedQueryRangeErrors(t *testing.T) {
	r, err := LoadRecording("testdata/good.json")
	if err != nil {
		t.Fatal(err)
	}
	const q = "sum by (service) (rate(http_requests_total[5m]))"
	start := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name    string
		ctx     context.Context
		query   string
		r       Range
		wantErr string
	}{
		{"unknown query", nil, "sum(rate(http_requests_total[1m]))", Range{Start: start, End: start, Step: 30 * time.Second},
			`query "sum(rate(http_requests_total[1m]))" is not in the recording`},
		{"step not a multiple", nil, q, Range{Start: start, End: start, Step: 45 * time.Second}, "step 45s is not a multiple of the recorded step 30s"},
		{"step finer", nil, q, Range{Start: start, End: start, Step: 15 * time.Second}, "not a multiple"},
		{"start off grid", nil, q, Range{Start: start.Add(10 * time.Second), End: start.Add(time.Minute), Step: 30 * time.Second}, "not on the recording's grid"},
		{"before the recording", nil, q, Range{Start: start.Add(-time.Hour), End: start.Add(-time.Minute), Step: 30 * time.Second}, "outside the recording"},
		{"after the recording", nil, q, Range{Start: start.Add(time.Hour), End: start.Add(2 * time.Hour), Step: 30 * time.Second}, "outside the recording"},
		{"invalid range", nil, q, Range{Start: start.Add(time.Minute), End: start, Step: 30 * time.Second}, "before start"},
		{"cancelled", cancelled, q, Range{Start: start, End: start, Step: 30 * time.Second}, "context canceled"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := tt.ctx
			if ctx == nil {
				ctx = context.Background()
			}
			_, _, err := r.QueryRange(ctx, tt.query, tt.r)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("got %v, want an error containing %q", err, tt.wantErr)
			}
			if !strings.Contains(err.Error(), fmt.Sprintf("%q", tt.query)) {
				t.Errorf("error %q does not name the query", err)
			}
		})
	}
}

func TestLoadRecordingGood(t *testing.T) {
	start := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	for _, file := range []string{"testdata/good.json", "testdata/good.json.gz"} {
		t.Run(file, func(t *testing.T) {
			r, err := LoadRecording(file)
			if err != nil {
				t.Fatal(err)
			}
			m, _, err := r.QueryRange(context.Background(), "sum by (service) (rate(http_requests_total[5m]))",
				Range{Start: start, End: start.Add(2 * time.Minute), Step: time.Minute})
			if err != nil {
				t.Fatal(err)
			}
			// api: 1, 3, 5 at whole minutes; web: 10, NaN, +Inf.
			if len(m) != 2 || len(m[0].Values) != 3 || m[0].Values[2].Value != 5 ||
				!math.IsNaN(float64(m[1].Values[1].Value)) || !math.IsInf(float64(m[1].Values[2].Value), 1) {
				t.Errorf("unexpected answer %v", m)
			}
			// A recorded empty result is an empty answer, not an error.
			m, _, err = r.QueryRange(context.Background(), "sum(redis_db_keys)", Range{Start: start, End: start, Step: 30 * time.Second})
			if err != nil || len(m) != 0 {
				t.Errorf("empty query: got %v, %v; want no series and no error", m, err)
			}
		})
	}
}

func TestRecordedAnswersAreCopies(t *testing.T) {
	r, err := LoadRecording("testdata/good.json")
	if err != nil {
		t.Fatal(err)
	}
	q, rg := "sum by (service) (rate(http_requests_total[5m]))", r.Range()
	m, _, _ := r.QueryRange(context.Background(), q, rg)
	m[0].Values[0].Value = 999
	m[0].Metric["service"] = "changed"
	again, _, _ := r.QueryRange(context.Background(), q, rg)
	if again[0].Values[0].Value != 1 || again[0].Metric["service"] != "api" {
		t.Errorf("changing an answer changed the recording: %v", again[0])
	}
}

func TestLoadRecordingInvalid(t *testing.T) {
	tests := []struct {
		file, wantErr string
	}{
		{"invalid-version.json", "unsupported version 2 (want 1)"},
		{"invalid-no-version.json", "unsupported version 0 (want 1)"},
		{"invalid-step-zero.json", `step "0s" must be positive`},
		{"invalid-step-missing.json", `step "0s" must be positive`},
		{"invalid-step-format.json", `unknown unit " seconds" in duration "30 seconds"`},
		{"invalid-start-missing.json", "start is missing"},
		{"invalid-start-format.json", `parsing time "yesterday"`},
		{"invalid-end-before-start.json", "end 2026-11-01T12:00:00Z is before start 2026-11-01T12:02:00Z"},
		{"invalid-no-queries.json", "no queries"},
		{"invalid-empty-query.json", "empty query"},
		{"invalid-unknown-field.json", `unknown field "querys"`},
		{"invalid-sample-before-start.json", `query "up": series {job="a"}: sample at 2026-11-01T11:59:30Z is outside the recording [2026-11-01T12:00:00Z, 2026-11-01T12:02:00Z]`},
		{"invalid-sample-after-end.json", "sample at 2026-11-01T12:02:30Z is outside the recording"},
		{"invalid-sample-off-grid.json", "sample at 2026-11-01T12:00:15Z is not on the recording's 30s step grid"},
		{"invalid-sample-order.json", "sample at 2026-11-01T12:00:00Z is out of order or repeated"},
		{"invalid-sample-value.json", "decoding JSON"},
		{"invalid-duplicate-series.json", `series {job="a"} appears twice`},
		{"invalid-null-series.json", "null series"},
		{"invalid-not-json.json", "decoding JSON: invalid character"},
		{"invalid-trailing.json", "unexpected data after the recording object"},
		{"invalid-truncated.json", "decoding JSON: unexpected EOF"},
		{"invalid-gzip.json.gz", "gzip"},
		{"does-not-exist.json", "no such file or directory"},
	}
	// Every invalid-* file has a case.
	files, _ := filepath.Glob("testdata/invalid-*")
	covered := map[string]bool{}
	for _, tt := range tests {
		covered[tt.file] = true
	}
	for _, f := range files {
		if !covered[filepath.Base(f)] {
			t.Errorf("%s has no test case", f)
		}
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			path := filepath.Join("testdata", tt.file)
			_, err := LoadRecording(path)
			if err == nil {
				t.Fatalf("got no error, want %q", tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error %q does not contain %q", err, tt.wantErr)
			}
			if !strings.Contains(err.Error(), path) {
				t.Errorf("error %q does not name the file", err)
			}
		})
	}
}

func TestRecordErrors(t *testing.T) {
	start := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	rg := Range{Start: start, End: start.Add(time.Hour), Step: time.Minute}
	failing := sourceFunc(func(context.Context, string, Range) (model.Matrix, Warnings, error) {
		return nil, nil, errors.New(`query "up": server_error: server error: 503`)
	})
	warning := sourceFunc(func(context.Context, string, Range) (model.Matrix, Warnings, error) {
		return model.Matrix{}, Warnings{"store eu-1 unavailable"}, nil
	})
	infoOnly := sourceFunc(func(context.Context, string, Range) (model.Matrix, Warnings, error) {
		return model.Matrix{}, Warnings{`PromQL info: metric might not be a counter, name does not end in _total/_sum/_count/_bucket: "up"`}, nil
	})
	offGrid := sourceFunc(func(_ context.Context, _ string, r Range) (model.Matrix, Warnings, error) {
		ts := model.TimeFromUnixNano(r.Start.Add(time.Second).UnixNano())
		return model.Matrix{{Metric: model.Metric{}, Values: []model.SamplePair{{Timestamp: ts, Value: 1}}}}, nil, nil
	})
	tests := []struct {
		name    string
		src     Source
		queries []string
		r       Range
		wantErr string // empty: success
	}{
		{"source error", failing, []string{"up"}, rg, "server error: 503"},
		{"warning", warning, []string{"up"}, rg, `query "up" [2026-11-01T00:00:00Z, 2026-11-01T01:00:00Z]: partial result: store eu-1 unavailable`},
		{"info annotation is fine", infoOnly, []string{"up"}, rg, ""},
		{"off-grid data", offGrid, []string{"up"}, rg, "cannot be replayed"},
		{"no queries", &synthetic{}, nil, rg, "no queries"},
		{"invalid range", &synthetic{}, []string{"up"}, Range{Start: start, End: start, Step: 0}, "must be positive"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Record(context.Background(), tt.src, tt.queries, tt.r, &bytes.Buffer{}, RecordOptions{})
			if tt.wantErr == "" {
				if err != nil {
					t.Errorf("Record: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("got %v, want an error containing %q", err, tt.wantErr)
			}
		})
	}
}

// FuzzReadRecording checks that no input makes ReadRecording panic, and that whatever it
// accepts can be queried over its own range.
func FuzzReadRecording(f *testing.F) {
	files, _ := filepath.Glob("testdata/*")
	for _, file := range files {
		if info, err := os.Stat(file); err == nil && info.IsDir() {
			continue // testdata/fuzz: Go's own corpus, read by the fuzzer itself
		}
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write([]byte(`{"version":1,"start":"2026-11-01T12:00:00Z","end":"2026-11-01T12:00:30Z","step":"30s","queries":{"up":[{"metric":{},"values":[[1793534430,"1"]]}]}}`))
	zw.Close()
	f.Add(gz.Bytes())
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := ReadRecording(bytes.NewReader(data))
		if err != nil {
			return
		}
		for _, q := range r.Queries() {
			if _, _, err := r.QueryRange(context.Background(), q, r.Range()); err != nil {
				t.Errorf("accepted recording cannot answer %q over its own range: %v", q, err)
			}
		}
	})
}

// TestRecordedStepAveraged: a step-averaged answer's point at t is the mean of the recorded
// samples in (t - step, t], gaps left out, as the engine averages while evaluating.
func TestRecordedStepAveraged(t *testing.T) {
	query := `sum by (service) (rate(token_mint_count[2m]))`
	start := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	rec := Range{Start: start, End: start.Add(2 * time.Hour), Step: 15 * time.Second}
	var buf bytes.Buffer
	if err := Record(context.Background(), &synthetic{}, []string{query}, rec, &buf, RecordOptions{}); err != nil {
		t.Fatal(err)
	}
	r, err := ReadRecording(&buf)
	if err != nil {
		t.Fatal(err)
	}
	ask := Range{Start: start.Add(time.Hour), End: start.Add(2 * time.Hour), Step: 5 * time.Minute}
	got, _, err := r.QueryRangeStepAveraged(context.Background(), query, ask)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("%d series, want 2", len(got))
	}
	for _, s := range got {
		name := string(s.Metric["series"])
		if len(s.Values) != 13 {
			t.Errorf("series %s: %d points, want 13", name, len(s.Values))
		}
		for _, p := range s.Values {
			var sum float64
			var n int
			for ts := p.Timestamp.Add(-5*time.Minute + 15*time.Second); ts <= p.Timestamp; ts = ts.Add(15 * time.Second) {
				if v, ok := syntheticValue(query, name, ts); ok {
					sum += float64(v)
					n++
				}
			}
			if want := sum / float64(n); math.Abs(float64(p.Value)-want) > 1e-9 {
				t.Errorf("series %s at %s: %g, want the step's mean %g", name, p.Timestamp.Time().UTC(), p.Value, want)
			}
		}
	}
	if _, _, err := r.QueryRangeStepAveraged(context.Background(), "up", ask); err == nil {
		t.Error("a query not recorded: no error")
	}
}
