package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/emergent-sh/emergent/internal/stack"
	"github.com/prometheus/common/model"
)

// startPrometheus starts the Debian prometheus on 127.0.0.1 over the backfilled dataDir, with
// no scrape targets. ruleFile, if set, is loaded (the anchor). The configuration allows
// out-of-order appends because the backfilled blocks reach into the future (so the rule
// manager, which only evaluates at the wall clock, has data): the rule manager's ALERTS
// samples at "now" fall before the newest block's end and would otherwise be rejected.
// The largest block is the backfill's, so Prometheus never compacts while we measure.
func startPrometheus(ctx context.Context, dir, dataDir, ruleFile string, interval time.Duration) (*stack.Process, error) {
	configPath := filepath.Join(dir, "prometheus.yml")
	if err := writePrometheusConfig(configPath, ruleFile, interval); err != nil {
		return nil, err
	}
	return stack.Start(ctx, stack.Spec{
		Name: "prometheus", Binary: "prometheus", Package: "prometheus", Dir: dir,
		Args: func(addr string) []string {
			return []string{
				"--config.file=" + configPath,
				"--web.listen-address=" + addr,
				"--storage.tsdb.path=" + dataDir,
				"--storage.tsdb.retention.time=" + model.Duration(stack.DefaultRetention).String(),
				"--storage.tsdb.max-block-duration=" + model.Duration(blockDuration).String(),
				"--web.enable-lifecycle",
				"--log.level=warn",
			}
		},
		Ready:        stack.HTTPReady("/-/ready"),
		ReadyTimeout: 5 * time.Minute, // opening the blocks of 10 000 services takes a while
	})
}

func writePrometheusConfig(path, ruleFile string, interval time.Duration) error {
	d := model.Duration(interval).String()
	var b strings.Builder
	fmt.Fprintf(&b, "global:\n  scrape_interval: %s\n  evaluation_interval: %s\n", d, d)
	b.WriteString("storage:\n  tsdb:\n    out_of_order_time_window: 30d\n")
	if ruleFile != "" {
		fmt.Fprintf(&b, "rule_files:\n  - %s\n", strconv.Quote(ruleFile))
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

// anchorGroup is the rule group name of the static anchor rules.
const anchorGroup = "emergent-anchor"

// anchorRules are static alerting rules equivalent to the shipped rules.toml: the bounded
// token ceiling, the token and local cache-miss ratio caps, the flush-storm count and the
// keyspace collapse.
// They cannot tell a surge from self-generated work, but they watch the same signals at the
// same interval, which is what an operator would run instead of emergentd.
var anchorRules = []struct{ alert, expr, forDur string }{
	{"TokenMintsAboveCeiling", `sum by (service) (rate(token_mint_count[2m])) > 0.033`, "5m"},
	{"TokenCacheMissRatioHigh", `sum by (service) (rate(token_cache_misses[2m])) / sum by (service) (rate(http_requests_total[2m])) > 0.05`, "5m"},
	{"LocalCacheMissRatioHigh", `sum by (service) (rate(cache_misses_total[2m])) / sum by (service) (rate(http_requests_total[2m])) > 0.5`, "5m"},
	{"RedisFlushStorm", `sum by (service) (increase(redis_commands_total{cmd=~"flushdb|flushall"}[10m])) >= 3`, "0s"},
	{"RedisKeyspaceCollapse", `sum by (service) (redis_db_keys) < 0.5 * sum by (service) (max_over_time(redis_db_keys[10m]))`, "0s"},
}

func writeAnchorRules(path string, interval time.Duration) error {
	var b strings.Builder
	fmt.Fprintf(&b, "groups:\n  - name: %s\n    interval: %s\n    rules:\n", anchorGroup, model.Duration(interval))
	for _, r := range anchorRules {
		fmt.Fprintf(&b, "      - alert: %s\n        expr: %s\n        for: %s\n", r.alert, strconv.Quote(r.expr), r.forDur)
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

// promClient talks to the Prometheus under test for measurements (not for evaluation).
type promClient struct {
	url    string
	client *http.Client
}

func newPromClient(u string) *promClient {
	return &promClient{url: u, client: &http.Client{Timeout: 5 * time.Minute}}
}

// queryStats is what Prometheus reports about one query with stats=all.
type queryStats struct {
	Series  int   // series in the result
	Samples int64 // totalQueryableSamples: samples loaded from storage
}

// rangeStats runs a range query with stats=all and returns its statistics. The body is
// streamed: only the series count and the stats at the end are kept, so a bootstrap-sized
// answer costs this process no memory.
func (c *promClient) rangeStats(ctx context.Context, query string, start, end time.Time, step time.Duration) (queryStats, error) {
	v := url.Values{
		"query": {query}, "start": {formatTime(start)}, "end": {formatTime(end)},
		"step": {strconv.FormatFloat(step.Seconds(), 'f', -1, 64)}, "stats": {"all"},
	}
	return c.stats(ctx, "/api/v1/query_range", v)
}

// instantStats runs an instant query with stats=all.
func (c *promClient) instantStats(ctx context.Context, query string, at time.Time) (queryStats, error) {
	v := url.Values{"query": {query}, "time": {formatTime(at)}, "stats": {"all"}}
	return c.stats(ctx, "/api/v1/query", v)
}

func formatTime(t time.Time) string {
	return strconv.FormatFloat(float64(t.UnixMilli())/1000, 'f', -1, 64)
}

func (c *promClient) stats(ctx context.Context, path string, v url.Values) (queryStats, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url+path, strings.NewReader(v.Encode()))
	if err != nil {
		return queryStats{}, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := c.client.Do(req)
	if err != nil {
		return queryStats{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return queryStats{}, fmt.Errorf("%s %q: %s: %s", path, v.Get("query"), resp.Status, body)
	}
	// Count series by their "metric" keys and keep the tail, which holds "stats".
	var st queryStats
	const tailMax = 4096
	tail := make([]byte, 0, 2*tailMax)
	r := bufio.NewReaderSize(resp.Body, 1<<20)
	buf := make([]byte, 1<<20)
	marker := []byte(`"metric":`)
	var carry []byte
	for {
		n, err := r.Read(buf)
		chunk := append(carry, buf[:n]...)
		st.Series += countNonOverlapping(chunk, marker)
		if len(chunk) >= len(marker) {
			// Keep the last len(marker)-1 bytes, which may start a marker split across reads;
			// they hold no whole marker, so nothing is counted twice.
			carry = append(carry[:0:0], chunk[len(chunk)-len(marker)+1:]...)
		} else {
			carry = append(carry[:0:0], chunk...)
		}
		tail = append(tail, buf[:n]...)
		if len(tail) > tailMax {
			tail = append(tail[:0], tail[len(tail)-tailMax:]...)
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return queryStats{}, err
		}
	}
	i := strings.LastIndex(string(tail), `"stats":`)
	if i < 0 {
		return st, fmt.Errorf("%s %q: no stats in the answer", path, v.Get("query"))
	}
	var stats struct {
		Samples struct {
			TotalQueryableSamples int64 `json:"totalQueryableSamples"`
		} `json:"samples"`
	}
	if err := json.NewDecoder(strings.NewReader(string(tail[i+len(`"stats":`):]))).Decode(&stats); err != nil {
		return st, fmt.Errorf("%s %q: stats: %w", path, v.Get("query"), err)
	}
	st.Samples = stats.Samples.TotalQueryableSamples
	return st, nil
}

func countNonOverlapping(b, sep []byte) int {
	return strings.Count(string(b), string(sep))
}

// metricsText scrapes Prometheus's own /metrics.
func (c *promClient) metrics(ctx context.Context) (map[string]float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		out[line[:i]] = v
	}
	return out, sc.Err()
}

// ruleGroupState is the anchor group's evaluation state from /api/v1/rules.
type ruleGroupState struct {
	LastEvaluation time.Time
	Evaluation     float64 // seconds the last evaluation took
	Health         []string
	Errors         []string
}

func (c *promClient) ruleGroup(ctx context.Context, name string) (ruleGroupState, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url+"/api/v1/rules", nil)
	if err != nil {
		return ruleGroupState{}, err
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return ruleGroupState{}, err
	}
	defer resp.Body.Close()
	var body struct {
		Data struct {
			Groups []struct {
				Name           string    `json:"name"`
				LastEvaluation time.Time `json:"lastEvaluation"`
				EvaluationTime float64   `json:"evaluationTime"`
				Rules          []struct {
					Health    string `json:"health"`
					LastError string `json:"lastError"`
				} `json:"rules"`
			} `json:"groups"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return ruleGroupState{}, err
	}
	for _, g := range body.Data.Groups {
		if g.Name != name {
			continue
		}
		st := ruleGroupState{LastEvaluation: g.LastEvaluation, Evaluation: g.EvaluationTime}
		for _, r := range g.Rules {
			st.Health = append(st.Health, r.Health)
			if r.LastError != "" {
				st.Errors = append(st.Errors, r.LastError)
			}
		}
		return st, nil
	}
	return ruleGroupState{}, fmt.Errorf("rule group %q not loaded", name)
}

// reload asks Prometheus to reload its configuration.
func (c *promClient) reload(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url+"/-/reload", nil)
	if err != nil {
		return err
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("reload: %s: %s", resp.Status, body)
	}
	return nil
}
