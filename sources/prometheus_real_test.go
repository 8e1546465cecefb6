package sources

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/emergent-sh/emergent/config"
	"github.com/emergent-sh/emergent/internal/promtest"
	"github.com/prometheus/client_golang/prometheus"
	commoncfg "github.com/prometheus/common/config"
	"github.com/prometheus/common/model"
)

// TestPrometheusRealServer runs the source against a real Prometheus with two backfilled
// counters, and checks that a recording made from it replays exactly what Prometheus answers.
func TestPrometheusRealServer(t *testing.T) {
	end := time.Now().Truncate(time.Minute)
	start := end.Add(-2 * time.Hour)
	var om strings.Builder
	om.WriteString("# HELP http_requests_total Requests.\n# TYPE http_requests_total counter\n")
	for i := 0; i <= 480; i++ { // every 15 s; api +10, web +1 per sample
		ts := start.Add(time.Duration(i) * 15 * time.Second).Unix()
		fmt.Fprintf(&om, "http_requests_total{service=\"api\"} %d %d\n", i*10, ts)
		fmt.Fprintf(&om, "http_requests_total{service=\"web\"} %d %d\n", i, ts)
	}
	om.WriteString("# EOF\n")
	srv := promtest.Start(t, promtest.Options{OpenMetrics: []byte(om.String())})

	p, err := NewPrometheus(config.Prometheus{URL: srv.URL, HTTPClient: commoncfg.DefaultHTTPClientConfig}, nil, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := p.Ready(ctx); err != nil {
		t.Fatalf("Ready: %v", err)
	}

	const rateQuery = `sum by (service) (rate(http_requests_total[1m]))`
	const rawQuery = `http_requests_total`
	window := Range{Start: end.Add(-time.Hour), End: end, Step: time.Minute}
	m, warnings, err := p.QueryRange(ctx, rateQuery, window)
	if err != nil || len(warnings) > 0 {
		t.Fatalf("QueryRange: %v (warnings %q)", err, warnings)
	}
	want := map[string]float64{"api": 10.0 / 15, "web": 1.0 / 15}
	if len(m) != 2 {
		t.Fatalf("got %d series, want 2: %v", len(m), m)
	}
	for _, s := range m {
		rate := want[string(s.Metric["service"])]
		if len(s.Values) != 61 {
			t.Errorf("%s: %d points, want 61", s.Metric, len(s.Values))
		}
		for _, v := range s.Values {
			if math.Abs(float64(v.Value)-rate) > 1e-9 {
				t.Errorf("%s at %s = %v, want %v", s.Metric, v.Timestamp.Time().UTC(), v.Value, rate)
				break
			}
		}
	}

	// A query filtered to a group answers for that group alone, exactly as unfiltered.
	filtered, err := FilteredQuery(rateQuery, map[string][]string{"service": {"web"}})
	if err != nil {
		t.Fatal(err)
	}
	one, _, err := p.QueryRange(ctx, filtered, window)
	if err != nil {
		t.Fatalf("QueryRange(%q): %v", filtered, err)
	}
	var web model.Matrix
	for _, s := range m {
		if s.Metric["service"] == "web" {
			web = append(web, s)
		}
	}
	if !matrixEqual(one, web) {
		t.Errorf("%q: got %v, want web's series of the unfiltered answer %v", filtered, one, web)
	}

	if _, err := p.Check(ctx, rateQuery); err != nil {
		t.Errorf("Check(%q): %v", rateQuery, err)
	}
	_, err = p.Check(ctx, "sum(")
	if err == nil || !strings.Contains(err.Error(), `query "sum("`) || !strings.Contains(err.Error(), "parse error") {
		t.Errorf("Check of bad PromQL: got %v, want a parse error naming the query", err)
	}
	_, _, err = p.QueryRange(ctx, `http_requests_total`, window) // instant vector selector: fine
	if err != nil {
		t.Errorf("QueryRange of a selector: %v", err)
	}

	// Record from Prometheus, replay, and compare with what Prometheus answers directly,
	// at the recorded step and at a coarser one.
	var buf bytes.Buffer
	queries := []string{rateQuery, rawQuery}
	if err := Record(ctx, p, queries, window, &buf, RecordOptions{Gzip: true}); err != nil {
		t.Fatalf("Record: %v", err)
	}
	rec, err := ReadRecording(&buf)
	if err != nil {
		t.Fatalf("ReadRecording: %v", err)
	}
	for _, r := range []Range{window, {Start: window.Start.Add(time.Minute), End: window.End, Step: 5 * time.Minute}} {
		for _, q := range queries {
			direct, _, err := p.QueryRange(ctx, q, r)
			if err != nil {
				t.Fatal(err)
			}
			replayed, _, err := rec.QueryRange(ctx, q, r)
			if err != nil {
				t.Fatal(err)
			}
			if !matrixEqual(direct, replayed) {
				t.Errorf("%q over %v: replay differs from Prometheus\nprometheus %v\nreplay     %v", q, r, direct, replayed)
			}
		}
	}
}
