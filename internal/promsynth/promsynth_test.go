package promsynth

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/api"
	v1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"
)

// testQuery and the series testAnswer gives it: a plain one whose value is its time, one
// whose label needs escaping and that has samples only on even minutes (as a `> 0` filter
// leaves gaps), and one that never has a sample and must be left out.
const testQuery = `sum by (service) (rate(http_requests_total[2m]))`

var testLabels = []model.LabelSet{
	{"service": "a"},
	{"instance": "i-\"0\"\\\n\u00e9", "service": "b"},
	{"service": "never"},
}

func testAnswer() Answer {
	return Answer{
		Series: len(testLabels),
		Labels: func(dst []model.LabelPair, i int) []model.LabelPair {
			for _, name := range []model.LabelName{"instance", "service"} { // sorted
				if v, ok := testLabels[i][name]; ok {
					dst = append(dst, model.LabelPair{Name: name, Value: v})
				}
			}
			return dst
		},
		Value: func(i int, t time.Time) (float64, bool) {
			switch i {
			case 0:
				return float64(t.Unix()) / 1000, true
			case 1:
				return 0.5, t.Unix()%120 == 0
			}
			return 0, false
		},
	}
}

// start serves testAnswer and returns a client_golang API on it.
func start(t *testing.T) (*Server, v1.API) {
	t.Helper()
	s, err := Start(map[string]Answer{testQuery: testAnswer()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	c, err := api.NewClient(api.Config{Address: s.URL})
	if err != nil {
		t.Fatal(err)
	}
	return s, v1.NewAPI(c)
}

var t0 = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

func TestQueryRangeHonoursStartEndStep(t *testing.T) {
	_, promAPI := start(t)
	for _, tc := range []struct {
		name       string
		r          v1.Range
		wantSeries int
		wantSteps  int
	}{
		{"one step", v1.Range{Start: t0, End: t0, Step: 15 * time.Second}, 2, 1},
		{"30s over 5m", v1.Range{Start: t0, End: t0.Add(5 * time.Minute), Step: 30 * time.Second}, 2, 11},
		{"end between steps", v1.Range{Start: t0, End: t0.Add(50 * time.Second), Step: 15 * time.Second}, 2, 4},
		{"odd minute only: the gappy series is left out", v1.Range{Start: t0.Add(time.Minute), End: t0.Add(110 * time.Second), Step: 10 * time.Second}, 1, 6},
		{"milliseconds", v1.Range{Start: t0.Add(1500 * time.Millisecond), End: t0.Add(4500 * time.Millisecond), Step: 1500 * time.Millisecond}, 1, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, _, _, err := promAPI.QueryRange(context.Background(), testQuery, tc.r)
			if err != nil {
				t.Fatal(err)
			}
			m, ok := v.(model.Matrix)
			if !ok {
				t.Fatalf("got a %s, want a matrix", v.Type())
			}
			if len(m) != tc.wantSeries {
				t.Fatalf("%d series, want %d: %v", len(m), tc.wantSeries, m)
			}
			a := testAnswer()
			for _, ss := range m {
				i := labelIndex(t, ss.Metric)
				if i == 0 && len(ss.Values) != tc.wantSteps {
					t.Errorf("series %v: %d values, want %d", ss.Metric, len(ss.Values), tc.wantSteps)
				}
				for k, sp := range ss.Values {
					at := sp.Timestamp.Time()
					if off := at.Sub(tc.r.Start); off%tc.r.Step != 0 || at.After(tc.r.End) || (i == 0 && off != time.Duration(k)*tc.r.Step) {
						t.Errorf("series %v: sample %d at %s, not a step of %s from %s", ss.Metric, k, at, tc.r.Step, tc.r.Start)
					}
					want, ok := a.Value(i, at)
					if !ok || float64(sp.Value) != want {
						t.Errorf("series %v at %s: %v, want %v (present %v)", ss.Metric, at, sp.Value, want, ok)
					}
				}
			}
		})
	}
}

// labelIndex finds which of testLabels a decoded series has.
func labelIndex(t *testing.T, m model.Metric) int {
	t.Helper()
	for i, ls := range testLabels {
		if ls.Equal(model.LabelSet(m)) {
			return i
		}
	}
	t.Fatalf("unexpected series %v", m)
	return -1
}

func TestInstantQuery(t *testing.T) {
	_, promAPI := start(t)
	for _, tc := range []struct {
		name string
		at   time.Time
		want int // series
	}{
		{"even minute: both", t0, 2},
		{"odd minute: the gappy one is absent", t0.Add(time.Minute), 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, _, _, err := promAPI.Query(context.Background(), testQuery, tc.at)
			if err != nil {
				t.Fatal(err)
			}
			vec, ok := v.(model.Vector)
			if !ok || len(vec) != tc.want {
				t.Fatalf("got %v, want a vector of %d", v, tc.want)
			}
			for _, s := range vec {
				if !s.Timestamp.Time().Equal(tc.at) {
					t.Errorf("%v at %s, want %s", s.Metric, s.Timestamp.Time(), tc.at)
				}
			}
		})
	}
}

func TestAnswersAreDeterministic(t *testing.T) {
	s, _ := start(t)
	// An hour at 30 s: 121 samples of the first series and 31 (even minutes) of the second.
	form := url.Values{"query": {testQuery}, "start": {"1764590400"}, "end": {"1764594000"}, "step": {"30"}}
	first := get(t, s.URL+"/api/v1/query_range?"+form.Encode(), http.StatusOK)
	if again := get(t, s.URL+"/api/v1/query_range?"+form.Encode(), http.StatusOK); !bytes.Equal(first, again) {
		t.Fatalf("two answers to the same query differ:\n%s\n%s", first, again)
	}
	if queries, samples := s.Served(); queries != 2 || samples != 2*(121+31) {
		t.Errorf("served %d queries, %d samples; want 2 and %d", queries, samples, 2*(121+31))
	}
}

func TestRefusalsAreBadData(t *testing.T) {
	_, promAPI := start(t)
	for _, tc := range []struct {
		name  string
		query string
		r     v1.Range
		want  string
	}{
		{"unknown query", "up", v1.Range{Start: t0, End: t0, Step: time.Second}, `no synthetic answer for the query "up"`},
		{"end before start", testQuery, v1.Range{Start: t0, End: t0.Add(-time.Second), Step: time.Second}, "end timestamp must not be before start time"},
		{"zero step", testQuery, v1.Range{Start: t0, End: t0, Step: 0}, "zero or negative query resolution step"},
		{"too many points", testQuery, v1.Range{Start: t0, End: t0.Add(11001 * time.Second), Step: time.Second}, "exceeded maximum resolution of 11,000 points"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, _, err := promAPI.QueryRange(context.Background(), tc.query, tc.r)
			var apiErr *v1.Error
			if !errors.As(err, &apiErr) || apiErr.Type != v1.ErrBadData || !strings.Contains(apiErr.Msg, tc.want) {
				t.Fatalf("got %v, want a bad_data error saying %q", err, tc.want)
			}
		})
	}
}

func TestGetAndPostAnswerAlike(t *testing.T) {
	s, _ := start(t)
	form := url.Values{"query": {testQuery}, "time": {"2026-12-01T12:00:00Z"}}
	got := get(t, s.URL+"/api/v1/query?"+form.Encode(), http.StatusOK)
	resp, err := http.PostForm(s.URL+"/api/v1/query", form)
	posted := body(t, "POST /api/v1/query", resp, err, http.StatusOK)
	if !bytes.Equal(got, posted) {
		t.Fatalf("GET and POST differ:\n%s\n%s", got, posted)
	}
	get(t, s.URL+"/-/ready", http.StatusOK)
	get(t, s.URL+"/api/v1/status/buildinfo", http.StatusOK)
}

func get(t *testing.T, u string, want int) []byte {
	t.Helper()
	resp, err := http.Get(u)
	return body(t, "GET "+u, resp, err, want)
}

// body reads an answer's body, failing the test unless the request got the status want.
func body(t *testing.T, what string, resp *http.Response, err error, want int) []byte {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != want {
		t.Fatalf("%s: %s, want %d: %s", what, resp.Status, want, b)
	}
	return b
}

func TestAppendSampleWritesWhatPrometheusWrites(t *testing.T) {
	for _, tc := range []struct {
		t    time.Time
		v    float64
		want string
	}{
		{time.Unix(1435781451, 0), 1, `[1435781451,"1"]`},
		{time.UnixMilli(1435781451781), 0.25, `[1435781451.781,"0.25"]`},
		{time.UnixMilli(1435781451780), 1e21, `[1435781451.78,"1000000000000000000000"]`},
		{time.Unix(1, 0), math.NaN(), `[1,"NaN"]`},
		{time.Unix(1, 0), math.Inf(1), `[1,"+Inf"]`},
		{time.Unix(1, 0), math.Inf(-1), `[1,"-Inf"]`},
	} {
		if got := string(appendSample(nil, tc.t, tc.v)); got != tc.want {
			t.Errorf("appendSample(%s, %v) = %s, want %s", tc.t, tc.v, got, tc.want)
		}
	}
}
