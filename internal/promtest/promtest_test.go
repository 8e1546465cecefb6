package promtest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestBackfillQueryRange proves the backfill path: a counter imported with promtool before
// start is returned by /api/v1/query_range with the values written.
func TestBackfillQueryRange(t *testing.T) {
	// One hour of a counter ending now, every 15 s, growing by 10 per sample.
	end := time.Now().Truncate(time.Minute)
	start := end.Add(-time.Hour)
	var om strings.Builder
	om.WriteString("# HELP promtest_requests_total Test counter.\n# TYPE promtest_requests_total counter\n")
	for i := 0; i <= 240; i++ {
		ts := start.Add(time.Duration(i) * 15 * time.Second)
		fmt.Fprintf(&om, "promtest_requests_total{service=\"api\"} %d %d\n", i*10, ts.Unix())
	}
	// No "# EOF": Start must add it.

	s := Start(t, Options{OpenMetrics: []byte(om.String()), LookbackDelta: time.Minute})

	q := url.Values{
		"query": {`promtest_requests_total{service="api"}`},
		"start": {strconv.FormatInt(start.Unix(), 10)},
		"end":   {strconv.FormatInt(end.Unix(), 10)},
		"step":  {"600"},
	}
	resp, err := http.Get(s.URL + "/api/v1/query_range?" + q.Encode())
	if err != nil {
		t.Fatalf("query_range: %v", err)
	}
	defer resp.Body.Close()
	var body struct {
		Status string `json:"status"`
		Data   struct {
			ResultType string `json:"resultType"`
			Result     []struct {
				Metric map[string]string `json:"metric"`
				Values [][2]any          `json:"values"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("decoding response (HTTP %d): %v", resp.StatusCode, err)
	}
	if body.Status != "success" || body.Data.ResultType != "matrix" || len(body.Data.Result) != 1 {
		t.Fatalf("got status %q, type %q, %d series; want one matrix series", body.Status, body.Data.ResultType, len(body.Data.Result))
	}
	series := body.Data.Result[0]
	if series.Metric["service"] != "api" {
		t.Errorf("metric = %v, want service=api", series.Metric)
	}
	// Steps every 10 min from start to end: 7 points, value 400 per step (40 samples × 10).
	if len(series.Values) != 7 {
		t.Fatalf("got %d points, want 7: %v", len(series.Values), series.Values)
	}
	for i, v := range series.Values {
		want := strconv.Itoa(i * 400)
		if v[1] != want {
			t.Errorf("point %d = %v, want %s", i, v[1], want)
		}
	}
}

// TestStartScrapes checks the scrape configuration: Prometheus scraping itself reports the
// target up.
func TestStartScrapes(t *testing.T) {
	s := Start(t, Options{ScrapeInterval: 100 * time.Millisecond})
	addr := strings.TrimPrefix(s.URL, "http://")
	// Restart with a config scraping the first server.
	scraper := Start(t, Options{ScrapeTargets: []string{addr}, ScrapeInterval: 100 * time.Millisecond})

	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(scraper.URL + "/api/v1/query?query=" + url.QueryEscape(`up{job="stack"}`))
		if err != nil {
			t.Fatalf("query: %v", err)
		}
		var body struct {
			Data struct {
				Result []struct {
					Value [2]any `json:"value"`
				} `json:"result"`
			} `json:"data"`
		}
		err = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if err != nil {
			t.Fatalf("decoding: %v", err)
		}
		if len(body.Data.Result) == 1 && body.Data.Result[0].Value[1] == "1" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("target %s never reported up; last answer %+v", addr, body)
		}
		time.Sleep(100 * time.Millisecond) // polling interval, not a wait for an outcome
	}
}

// TestStop checks that Stop ends the process and is idempotent.
func TestStop(t *testing.T) {
	s := Start(t, Options{})
	s.Stop()
	s.Stop()
	select {
	case <-s.proc.Exited():
	default:
		t.Fatal("process still running after Stop")
	}
	if _, err := http.Get(s.URL + "/-/ready"); err == nil {
		t.Error("server still answers after Stop")
	}
}
