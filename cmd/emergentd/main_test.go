package main

import (
	"encoding/json"
	"fmt"
	"github.com/emergent-sh/emergent/internal/syncbuf"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/emergent-sh/emergent/internal/promtest"
	"github.com/emergent-sh/emergent/internal/stack"
	"github.com/emergent-sh/emergent/internal/synth"
	"golang.org/x/crypto/bcrypt"
)

// buildBinary compiles emergentd once for the process-level tests.
func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "emergentd")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

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

func get(url string) (int, string) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestDaemonProcess runs the real binary: flags, endpoints, SIGHUP with a bad file, SIGTERM.
func TestDaemonProcess(t *testing.T) {
	prom := promtest.Start(t, promtest.Options{})
	bin := buildBinary(t)
	dir := t.TempDir()
	shipped, err := os.ReadFile(filepath.Join("..", "..", "rules.toml"))
	if err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "rules.toml")
	good := strings.Replace(string(shipped), `history = "7d"`, `history = "1h"`, 1)
	if err := os.WriteFile(cfgPath, []byte(good), 0o600); err != nil {
		t.Fatal(err)
	}
	port, err := stack.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	logs := &syncbuf.Buffer{}
	cmd := exec.Command(bin, "--config.file="+cfgPath, "--prometheus.url="+prom.URL,
		"--web.listen-address="+addr, "--storage.path="+filepath.Join(dir, "data"))
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		_ = cmd.Process.Kill() // by the PID we started; no-op if already gone
		if t.Failed() {
			t.Logf("emergentd log:\n%s", logs.String())
		}
	}()
	base := "http://" + addr

	waitFor(t, 30*time.Second, "/-/ready", func() bool { code, _ := get(base + "/-/ready"); return code == 200 })
	if code, body := get(base + "/-/healthy"); code != 200 {
		t.Errorf("/-/healthy: %d %s", code, body)
	}
	if out, err := exec.Command(bin, "healthcheck", "--url="+base+"/-/healthy").CombinedOutput(); err != nil {
		t.Errorf("healthcheck against the running daemon: %v\n%s", err, out)
	}
	// A second daemon on the same address fails at once, before it loads any history.
	out, err := exec.Command(bin, "--config.file="+cfgPath, "--prometheus.url="+prom.URL,
		"--web.listen-address="+addr, "--storage.path=").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "address already in use") || strings.Contains(string(out), "history loaded") {
		t.Errorf("second daemon on a taken port: %v\n%s\nwant exit 1 on the taken port before loading history", err, out)
	}
	if code, _ := get(base + "/-/reload"); code != http.StatusMethodNotAllowed {
		t.Errorf("GET /-/reload = %d, want 405", code)
	}
	_, metrics := get(base + "/metrics")
	for _, want := range []string{"emergent_build_info", "emergent_evaluation_steps_total", "emergent_prometheus_queries_total"} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}

	// SIGHUP with a broken file: the daemon keeps running on the last good configuration.
	if err := os.WriteFile(cfgPath, []byte(good+"\n[global]\nbogus = 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "reload failure in metrics", func() bool {
		_, m := get(base + "/metrics")
		return strings.Contains(m, "emergent_config_last_reload_successful 0")
	})
	if !strings.Contains(logs.String(), "rules.toml:") {
		t.Errorf("reload error lacks file:line; log:\n%s", logs.String())
	}
	if code, _ := get(base + "/-/ready"); code != 200 {
		t.Error("not ready after a bad reload")
	}
	// Fix the file; reload over HTTP.
	if err := os.WriteFile(cfgPath, []byte(good), 0o600); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post(base+"/-/reload", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("POST /-/reload = %d", resp.StatusCode)
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("exit after SIGTERM: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("emergentd did not stop within 30s of SIGTERM")
	}
}

func TestCheckCommand(t *testing.T) {
	bin := buildBinary(t)
	tests := []struct {
		file     string
		wantCode int
		want     string
	}{
		{filepath.Join("..", "..", "rules.toml"), 0, "SUCCESS: 2 rules"},
		{filepath.Join("..", "..", "config", "testdata", "invalid-promql.toml"), 1, "invalid-promql.toml:11: rules[0].signals[0].query: invalid PromQL"},
	}
	for _, tc := range tests {
		out, err := exec.Command(bin, "check", "--config.file="+tc.file).CombinedOutput()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		if code != tc.wantCode || !strings.Contains(string(out), tc.want) {
			t.Errorf("check %s: exit %d, output:\n%s\nwant exit %d and %q", tc.file, code, out, tc.wantCode, tc.want)
		}
	}
}

// TestReplayQuickStart runs the README's first command: the shipped recording, nothing else.
func TestReplayQuickStart(t *testing.T) {
	bin := buildBinary(t)
	cmd := exec.Command(bin, "replay")
	cmd.Dir = t.TempDir() // no rules.toml around: the recording carries its configuration
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("replay: %v\n%s", err, out)
	}
	// The recording is the end-to-end suite's run of cmd/emergent-lab on a real stack
	// (go test ./e2e -run TestRealStack -update-quickstart): the incidents fire, checkout's
	// resolves when its lab is switched back to a shared cache, and the controls (catalog's
	// legitimate surge among them) raise nothing.
	for _, want := range []string{
		`FIRING self_generated_traffic service="checkout"`,
		`FIRING self_generated_traffic service="reports"`,
		`FIRING flush_storm service="media"`,
		`RESOLVED self_generated_traffic service="checkout"`,
		`FIRING self_generated_traffic service="inventory"`,
		"2 instances do the work independently",
		"idle but busy",
		"FLUSHDB/FLUSHALL per write (upload)",
		"instances went 2 → 6",
		"4 episodes.",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("replay output lacks %q:\n%s", want, out)
		}
	}
	// The README's sample is the real output, line for line.
	readme, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, quick, _ := strings.Cut(string(readme), "## Quick start")
	_, sample, _ := strings.Cut(quick, "```text\n")
	sample, _, _ = strings.Cut(sample, "```")
	if strings.TrimSpace(sample) == "" {
		t.Fatal("README's quick start has no ```text sample")
	}
	if !strings.Contains(string(out), sample) {
		t.Errorf("README's quick start sample is not in the replay output:\n%s\noutput:\n%s", sample, out)
	}
	for _, control := range []string{"search", "catalog", "files", "billing", "sessions", "ledger"} {
		if strings.Contains(string(out), fmt.Sprintf("service=%q", control)) {
			t.Errorf("replay output raises something on the control %s:\n%s", control, out)
		}
	}
}

// TestSIGKILLDoesNotPageTwice kills the daemon (SIGKILL) mid-episode and starts it again with
// the same storage: Slack is not paged a second time, and Alertmanager keeps getting the same
// alert with the same startsAt.
func TestSIGKILLDoesNotPageTwice(t *testing.T) {
	end := time.Now().Truncate(15 * time.Second)
	prom := promtest.Start(t, promtest.Options{OpenMetrics: synth.IncidentHistory(end)})
	bin := buildBinary(t)
	dir := t.TempDir()

	var mu sync.Mutex
	var slackPosts []string
	var amStarts []string
	slack := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		slackPosts = append(slackPosts, string(b))
		mu.Unlock()
		io.WriteString(w, "ok")
	}))
	defer slack.Close()
	am := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var batch []struct {
			Labels   map[string]string `json:"labels"`
			StartsAt string            `json:"startsAt"`
		}
		_ = json.NewDecoder(r.Body).Decode(&batch)
		mu.Lock()
		for _, a := range batch {
			if a.Labels["service"] == "checkout" {
				amStarts = append(amStarts, a.StartsAt)
			}
		}
		mu.Unlock()
	}))
	defer am.Close()

	shipped, err := os.ReadFile(filepath.Join("..", "..", "rules.toml"))
	if err != nil {
		t.Fatal(err)
	}
	timings := []string{`history = "7d"`, `history = "1h"`, `replay = "6h"`, `replay = "2h"`,
		`evaluation_interval = "30s"`, `evaluation_interval = "5s"`, `baseline_step = "15m"`, `baseline_step = "1m"`,
		`resend_delay = "1m"`, `resend_delay = "1s"`}
	for i := 0; i < len(timings); i += 2 {
		if !strings.Contains(string(shipped), timings[i]) {
			t.Fatalf("rules.toml no longer contains %q; update the test", timings[i])
		}
	}
	cfg := strings.NewReplacer(timings...).Replace(string(shipped)) + fmt.Sprintf(`
[[receivers]]
name = "am"
type = "alertmanager"
urls = [%q]

[[receivers]]
name = "slack"
type = "slack"
webhook_url = %q

[[routes]]
receiver = "am"

[[routes]]
receiver = "slack"
`, am.URL, slack.URL+"/services/T/B/X")
	cfgPath := filepath.Join(dir, "rules.toml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	start := func() *exec.Cmd {
		cmd := exec.Command(bin, "--config.file="+cfgPath, "--prometheus.url="+prom.URL,
			"--web.listen-address=127.0.0.1:0", "--storage.path="+filepath.Join(dir, "data"))
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd
	}
	posts := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(slackPosts)
	}
	amCount := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(amStarts)
	}

	first := start()
	waitFor(t, 60*time.Second, "two Slack pages", func() bool { return posts() == 2 })
	// Delivery is at least once: a page is recorded after Slack accepted it, so a SIGKILL in
	// between pages again (a lost page would be worse). Kill once both are recorded.
	waitFor(t, 10*time.Second, "both pages recorded in the Slack state file", func() bool {
		b, err := os.ReadFile(filepath.Join(dir, "data", "slack-slack.json"))
		return err == nil && strings.Count(string(b), `"fired_at"`) == 2
	})
	if err := first.Process.Kill(); err != nil { // SIGKILL, by the PID we started
		t.Fatal(err)
	}
	_ = first.Wait()
	sent := amCount()

	second := start()
	defer func() {
		_ = second.Process.Signal(syscall.SIGTERM)
		_ = second.Wait()
	}()
	// Wait until the second daemon has re-sent the alert to Alertmanager a few times: by then
	// it has evaluated, and any second Slack page would have been posted.
	waitFor(t, 60*time.Second, "the restarted daemon re-sending to Alertmanager", func() bool { return amCount() >= sent+3 })
	if n := posts(); n != 2 {
		mu.Lock()
		t.Errorf("Slack got %d posts after the restart, want still 2:\n%s", n, strings.Join(slackPosts, "\n"))
		mu.Unlock()
	}
	mu.Lock()
	defer mu.Unlock()
	for _, s := range amStarts {
		if s != amStarts[0] {
			t.Errorf("startsAt changed across the SIGKILL: %s then %s", amStarts[0], s)
			break
		}
	}
}

// TestWebConfigBasicAuth: the endpoints honour an exporter-toolkit web config.
func TestWebConfigBasicAuth(t *testing.T) {
	prom := promtest.Start(t, promtest.Options{})
	bin := buildBinary(t)
	dir := t.TempDir()
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret-pass"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	webCfg := filepath.Join(dir, "web.yml")
	if err := os.WriteFile(webCfg, []byte("basic_auth_users:\n  admin: "+string(hash)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	port, err := stack.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	logs := &syncbuf.Buffer{}
	cmd := exec.Command(bin, "--config.file="+filepath.Join("..", "..", "rules.toml"), "--prometheus.url="+prom.URL,
		"--web.listen-address="+addr, "--web.config.file="+webCfg, "--storage.path=")
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}()
	waitFor(t, 30*time.Second, "listener", func() bool { code, _ := get("http://" + addr + "/-/healthy"); return code != 0 })
	if code, _ := get("http://" + addr + "/metrics"); code != http.StatusUnauthorized {
		t.Errorf("/metrics without credentials = %d, want 401", code)
	}
	req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/metrics", nil)
	req.SetBasicAuth("admin", "s3cret-pass")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("/metrics with credentials = %d, want 200", resp.StatusCode)
	}
	if strings.Contains(logs.String(), "s3cret-pass") {
		t.Error("the password appears in the log")
	}
}

// TestCheckQuery runs `check --query` against a real Prometheus holding the seeds' incidents:
// it reports what each query returns, and fails a rule that would watch nothing or could not
// tell its groups or instances apart, where it used to print OK for every query that parsed.
func TestCheckQuery(t *testing.T) {
	end := time.Now().Truncate(15 * time.Second)
	prom := promtest.Start(t, promtest.Options{OpenMetrics: synth.IncidentHistory(end)})
	bin := buildBinary(t)
	shipped, err := os.ReadFile(filepath.Join("..", "..", "rules.toml"))
	if err != nil {
		t.Fatal(err)
	}
	const (
		replicas = `replicas = 'sum by (service, instance) (rate(http_requests_total[2m]))'`
		inbound  = `inbound = 'sum by (service) (rate(http_requests_total[2m]))'`
		mints    = `query = 'sum by (service) (rate(token_mint_count[2m]))'`
	)
	// The incidents' request counters carry no instance label; their mint counters do.
	fixed := strings.Replace(string(shipped), replicas, `replicas = 'sum by (service, instance) (rate(token_mint_count[2m]))'`, 1)
	for _, s := range []string{replicas, inbound, mints} {
		if !strings.Contains(string(shipped), s) {
			t.Fatalf("rules.toml no longer contains %q; update the test", s)
		}
	}
	// One rule whose only work signal is optional and returns nothing watches nothing.
	onlyOptional := `[[rules]]
name = "token-minting"
kind = "self_generated_traffic"
group_by = ["service"]
` + inbound + `
  [[rules.signals]]
  name = "local_misses"
  query = 'sum by (service) (rate(cache_misses_total[2m]))'
  relation = "proportional"
  optional = true
`
	tests := []struct {
		name, config string
		wantCode     int
		want         []string
	}{
		{"every query usable", fixed, 0, []string{
			`OK: rule "token-minting" inbound: 4 series, 4 groups`,
			`OK: rule "token-minting" replicas: 5 series, 2 groups`,
			// The incidents have no local cache: the optional signal is noted, not failed.
			`OK: rule "token-minting" signals[3] (cache_misses): 0 series, 0 groups; no series: an optional signal`,
		}},
		{"one endpoint for every replica", string(shipped), 1, []string{
			`FAILED: rule "token-minting" replicas: returns series without the instance label "instance"`,
		}},
		{"inbound not aggregated by service", strings.Replace(fixed, inbound, `inbound = 'sum(rate(http_requests_total[2m]))'`, 1), 1, []string{
			`FAILED: rule "token-minting" inbound: returns series without the label "service" the rule groups by`,
		}},
		{"a metric that is not there", strings.Replace(fixed, mints, `query = 'sum by (service) (rate(token_mints_total[2m]))'`, 1), 1, []string{
			`FAILED: rule "token-minting" signals[0] (token_mints): returns no series, so the rule watches nothing`,
		}},
		{"only optional signals, all empty", onlyOptional, 1, []string{
			`FAILED: rule "token-minting" signals[0] (local_misses): returns no series, and neither does any other work signal: the rule watches nothing`,
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "rules.toml")
			if err := os.WriteFile(path, []byte(tc.config), 0o600); err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command(bin, "check", "--query", "--config.file="+path, "--prometheus.url="+prom.URL).CombinedOutput()
			code := 0
			if ee, ok := err.(*exec.ExitError); ok {
				code = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if code != tc.wantCode {
				t.Errorf("exit %d, want %d; output:\n%s", code, tc.wantCode, out)
			}
			for _, w := range tc.want {
				if !strings.Contains(string(out), w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
		})
	}
}
