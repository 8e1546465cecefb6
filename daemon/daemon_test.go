package daemon

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emergent-sh/emergent/config"
	"github.com/emergent-sh/emergent/internal/promtest"
	"github.com/emergent-sh/emergent/internal/synth"
	"github.com/emergent-sh/emergent/sources"
	"github.com/prometheus/client_golang/prometheus"
)

// recorder is an HTTP peer that keeps every request body it gets.
type recorder struct {
	mu     sync.Mutex
	bodies []string
	times  []time.Time // when each body arrived
}

func (r *recorder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	r.bodies = append(r.bodies, req.URL.Path+" "+string(body))
	r.times = append(r.times, time.Now())
	r.mu.Unlock()
	if strings.Contains(req.URL.Path, "slack") {
		io.WriteString(w, "ok")
		return
	}
	w.WriteHeader(http.StatusOK)
}

// resolvedAt returns, for every Alertmanager post, the alerts it reported resolved (endsAt at
// or before the moment it arrived).
func (r *recorder) resolved(t *testing.T) []postedAlert {
	r.mu.Lock()
	bodies, times := append([]string(nil), r.bodies...), append([]time.Time(nil), r.times...)
	r.mu.Unlock()
	var out []postedAlert
	for i, b := range bodies {
		for _, a := range amAlerts(t, []string{b}) {
			if !a.EndsAt.After(times[i]) {
				out = append(out, a)
			}
		}
	}
	return out
}

func (r *recorder) all() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.bodies...)
}

// testRules is the shipped rules.toml with test timings and a Prometheus URL.
func testRules(t *testing.T, promURL string) string {
	t.Helper()
	shipped, err := os.ReadFile(filepath.Join("..", "rules.toml"))
	if err != nil {
		t.Fatal(err)
	}
	text := string(shipped)
	for old, repl := range map[string]string{
		`evaluation_interval = "30s"`:     `evaluation_interval = "15s"`,
		`evaluation_delay = "15s"`:        `evaluation_delay = "0s"`,
		`history = "7d"`:                  `history = "1h"`,
		`baseline_step = "15m"`:           `baseline_step = "1m"`,
		`replay = "6h"`:                   `replay = "2h"`,
		`url = "http://127.0.0.1:9090"`:   fmt.Sprintf("url = %q", promURL),
		`max_concurrent_queries = 4`:      `max_concurrent_queries = 2`,
		`# external_labels = { cluster =`: `external_labels = { cluster = "test" } #`,
	} {
		if !strings.Contains(text, old) {
			t.Fatalf("rules.toml no longer contains %q; update the test", old)
		}
		text = strings.Replace(text, old, repl, 1)
	}
	return text
}

// testConfig is testRules plus an Alertmanager and a Slack receiver, written to dir.
func testConfig(t *testing.T, dir, promURL, amURL, slackURL string) string {
	t.Helper()
	text := testRules(t, promURL)
	secret := filepath.Join(dir, "slack-url")
	if err := os.WriteFile(secret, []byte(slackURL+"/services/T0/B0/SECRETWEBHOOK"), 0o600); err != nil {
		t.Fatal(err)
	}
	text += fmt.Sprintf(`
[[receivers]]
name = "am"
type = "alertmanager"
urls = [%q]

[[receivers]]
name = "slack"
type = "slack"
webhook_url_file = %q

[[routes]]
receiver = "am"

[[routes]]
receiver = "slack"
kinds = ["self_generated_traffic", "flush_storm"]
`, amURL, secret)
	path := filepath.Join(dir, "rules.toml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// waitFor polls cond until it holds or the deadline passes; waits are bounded by conditions.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

type postedAlert struct {
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
	StartsAt    time.Time         `json:"startsAt"`
	EndsAt      time.Time         `json:"endsAt"`
}

func amAlerts(t *testing.T, bodies []string) []postedAlert {
	var out []postedAlert
	for _, b := range bodies {
		path, body, _ := strings.Cut(b, " ")
		if path != "/api/v2/alerts" {
			t.Errorf("Alertmanager got a request on %s", path)
			continue
		}
		var batch []postedAlert
		if err := json.Unmarshal([]byte(body), &batch); err != nil {
			t.Fatalf("Alertmanager payload is not an alert list: %v: %s", err, body)
		}
		out = append(out, batch...)
	}
	return out
}

// TestIncidentsAgainstRealPrometheus backfills a real Prometheus with the seeds' incidents and
// controls, then runs the daemon and the backtest against it.
func TestIncidentsAgainstRealPrometheus(t *testing.T) {
	end := time.Now().Truncate(15 * time.Second)
	prom := promtest.Start(t, promtest.Options{OpenMetrics: synth.IncidentHistory(end)})

	t.Run("backtest", func(t *testing.T) {
		dir := t.TempDir()
		cfg, err := LoadConfig(testConfig(t, dir, prom.URL, "http://127.0.0.1:1", "http://127.0.0.1:1"), "", "")
		if err != nil {
			t.Fatal(err)
		}
		src, err := sources.NewPrometheus(cfg.Prometheus, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
		if err != nil {
			t.Fatal(err)
		}
		episodes, err := Backtest(context.Background(), cfg, src, end.Add(-2*time.Hour), end, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		var sb strings.Builder
		if err := WriteJSONLines(&sb, episodes); err != nil {
			t.Fatal(err)
		}
		t.Logf("backtest output:\n%s", sb.String())
		got := map[string]bool{}
		for _, e := range episodes {
			got[e.Kind+"/"+e.Labels["service"]] = true
		}
		want := map[string]bool{"self_generated_traffic/checkout": true, "flush_storm/media": true}
		if len(got) != len(want) {
			t.Errorf("episodes %v, want exactly %v", got, want)
		}
		for k := range want {
			if !got[k] {
				t.Errorf("missing episode %s", k)
			}
		}
		// Every line parses back with exactly the contract's fields.
		sc := bufio.NewScanner(strings.NewReader(sb.String()))
		for sc.Scan() {
			var m map[string]any
			if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
				t.Fatal(err)
			}
			if len(m) != 7 {
				t.Errorf("line has %d fields, want 7: %s", len(m), sc.Text())
			}
			for _, f := range []string{"kind", "rule", "labels", "start", "end", "severity", "summary"} {
				if _, ok := m[f]; !ok {
					t.Errorf("line lacks %q: %s", f, sc.Text())
				}
			}
		}
		for _, e := range episodes {
			if e.Kind == config.KindSelfGenerated {
				onset := end.Add(-40 * time.Minute)
				delay := e.Start.Sub(onset)
				t.Logf("checkout: onset %s, fired %s (%s after onset, for = 5m)", onset.Format(time.TimeOnly), e.Start.Format(time.TimeOnly), delay)
				if delay < 5*time.Minute || delay > 5*time.Minute+4*15*time.Second+2*time.Minute {
					t.Errorf("fired %s after onset; want for (5m) + rate window + a few steps", delay)
				}
			}
		}
	})

	t.Run("record and replay", func(t *testing.T) {
		rules := testRules(t, prom.URL)
		cfg, err := config.Load([]byte(rules), "rules.toml")
		if err != nil {
			t.Fatal(err)
		}
		src, err := sources.NewPrometheus(cfg.Prometheus, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		rg := RecordRange(cfg, end.Add(-2*time.Hour), end)
		if err := sources.Record(context.Background(), src, cfg.Queries(), rg, &buf, sources.RecordOptions{Gzip: true, Config: testRules(t, "http://127.0.0.1:9090")}); err != nil {
			t.Fatal(err)
		}
		rec, err := sources.ReadRecording(&buf)
		if err != nil {
			t.Fatal(err)
		}
		replayCfg, err := config.Load([]byte(rec.Config()), "recording")
		if err != nil {
			t.Fatal(err)
		}
		var out strings.Builder
		n, err := Replay(context.Background(), replayCfg, rec, &out, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("replay output (%d KiB recording):\n%s", buf.Len()>>10, out.String())
		if n != 2 {
			t.Errorf("replay found %d episodes, want 2", n)
		}
		for _, want := range []string{
			`FIRING self_generated_traffic service="checkout"`, `FIRING flush_storm service="media"`,
			`alertname="SelfGeneratedTraffic"`, "Diagnosis: 4 instances do the work independently",
			"Diagnosis: 1 FLUSHDB/FLUSHALL per write",
		} {
			if !strings.Contains(out.String(), want) {
				t.Errorf("replay output lacks %q", want)
			}
		}
	})

	t.Run("daemon", func(t *testing.T) {
		dir := t.TempDir()
		am := &recorder{}
		amSrv := httptest.NewServer(am)
		defer amSrv.Close()
		slack := &recorder{}
		slackSrv := httptest.NewServer(slack)
		defer slackSrv.Close()
		cfgPath := testConfig(t, dir, prom.URL, amSrv.URL, slackSrv.URL)

		var logs strings.Builder
		var logMu sync.Mutex
		logger := slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
			logMu.Lock()
			defer logMu.Unlock()
			return logs.Write(p)
		}), nil))
		// The daemon's clock starts at the history's last sample: started later, its first
		// evaluation could fall on a step past the data and read the storm as stopped.
		started := time.Now()
		now := func() time.Time { return end.Add(time.Since(started)) }
		d, err := New(Options{ConfigFile: cfgPath, StoragePath: filepath.Join(dir, "data"), EnableReload: true, Logger: logger, Now: now})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- d.Run(ctx) }()
		defer func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		}()
		web := httptest.NewServer(d.Handler())
		defer web.Close()

		kinds := func() map[string]postedAlert {
			out := map[string]postedAlert{}
			for _, a := range amAlerts(t, am.all()) {
				out[a.Labels["alertname"]+"/"+a.Labels["service"]] = a
			}
			return out
		}
		waitFor(t, 60*time.Second, "both incidents at Alertmanager and Slack", func() bool {
			k := kinds()
			_, tok := k["SelfGeneratedTraffic/checkout"]
			_, storm := k["FlushStorm/media"]
			return tok && storm && len(slack.all()) >= 2
		})
		for name, a := range kinds() {
			switch name {
			case "SelfGeneratedTraffic/checkout", "FlushStorm/media":
			default:
				t.Errorf("unexpected alert %s: %+v", name, a)
			}
			if a.Labels["cluster"] != "test" || a.Labels["rule"] == "" || a.Labels["kind"] == "" || a.Labels["severity"] == "" {
				t.Errorf("%s lacks stable labels: %v", name, a.Labels)
			}
			if !a.EndsAt.After(now()) {
				t.Errorf("%s: firing alert endsAt %s is not in the future", name, a.EndsAt)
			}
		}
		tok := kinds()["SelfGeneratedTraffic/checkout"]
		if !strings.Contains(tok.Annotations["diagnosis"], "4 instances") {
			t.Errorf("token diagnosis does not name the instances: %q", tok.Annotations["diagnosis"])
		}
		storm := kinds()["FlushStorm/media"]
		if !strings.Contains(storm.Annotations["diagnosis"], "per write") {
			t.Errorf("storm diagnosis does not name flushes per write: %q", storm.Annotations["diagnosis"])
		}
		slackText := strings.Join(slack.all(), "\n")
		for _, want := range []string{"checkout", "media", "instances", "FLUSHDB"} {
			if !strings.Contains(slackText, want) {
				t.Errorf("Slack messages lack %q", want)
			}
		}
		t.Logf("Slack received:\n%s", slackText)

		get := func(path string) (int, string) {
			resp, err := http.Get(web.URL + path)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			return resp.StatusCode, string(b)
		}
		if code, body := get("/-/ready"); code != 200 {
			t.Errorf("/-/ready = %d %s", code, body)
		}
		_, metrics := get("/metrics")
		for _, want := range []string{
			`emergent_group_state{rule="token-minting",service="checkout"} 2`,
			`emergent_group_state{rule="token-minting",service="search"} 0`,
			`emergent_config_last_reload_successful 1`,
			`emergent_notifications_total`,
		} {
			if !strings.Contains(metrics, want) {
				t.Errorf("/metrics lacks %s", want)
			}
		}
		_, served := get("/api/v1/status/config")
		if strings.Contains(served, "SECRETWEBHOOK") {
			t.Error("served config shows the Slack webhook URL")
		}

		// A bad reload keeps the running configuration and says so.
		good, _ := os.ReadFile(cfgPath)
		if err := os.WriteFile(cfgPath, append(good, []byte("\n[[rules]]\nname = 42\n")...), 0o600); err != nil {
			t.Fatal(err)
		}
		resp, err := http.Post(web.URL+"/-/reload", "", nil)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 500 || !strings.Contains(string(body), "rules.toml:") {
			t.Errorf("bad reload: %d %s", resp.StatusCode, body)
		}
		if _, m := get("/metrics"); !strings.Contains(m, "emergent_config_last_reload_successful 0") {
			t.Error("bad reload not reported in metrics")
		}
		if _, m := get("/metrics"); !strings.Contains(m, `emergent_group_state{rule="token-minting",service="checkout"} 2`) {
			t.Error("bad reload lost the running episode")
		}

		logMu.Lock()
		defer logMu.Unlock()
		if strings.Contains(logs.String(), "SECRETWEBHOOK") {
			t.Error("logs show the Slack webhook URL")
		}
	})
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
