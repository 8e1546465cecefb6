package daemon

import (
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
	"testing"
	"time"

	"github.com/emergent-sh/emergent/internal/faultproxy"
	"github.com/emergent-sh/emergent/internal/promtest"
	"github.com/emergent-sh/emergent/internal/stack"
	"github.com/emergent-sh/emergent/internal/synth"
)

// TestFaultsAgainstRealPrometheus puts a fault-injecting proxy between the daemon and a real
// Prometheus while two episodes are firing. Every fault must leave the episodes alone (no
// resolve anywhere), make the daemon say it is blind (meta-alert, /-/ready, metrics), and heal
// by itself when the source is back, with the same startsAt.
func TestFaultsAgainstRealPrometheus(t *testing.T) {
	end := time.Now().Truncate(time.Second)
	prom := promtest.Start(t, promtest.Options{OpenMetrics: synth.IncidentHistory(end)})
	proxy := faultproxy.New(prom.URL)
	defer proxy.Close()

	dir := t.TempDir()
	am := &recorder{}
	amSrv := httptest.NewServer(am)
	defer amSrv.Close()
	slack := &recorder{}
	slackSrv := httptest.NewServer(slack)
	defer slackSrv.Close()
	cfgPath := testConfig(t, dir, proxy.URL, amSrv.URL, slackSrv.URL)
	text, _ := os.ReadFile(cfgPath)
	cfgText := string(text)
	for old, repl := range map[string]string{
		`evaluation_interval = "15s"`: `evaluation_interval = "1s"`,
		`baseline_step = "1m"`:        `baseline_step = "60s"`,
		`replay = "2h"`:               `replay = "1h"`,
		`resend_delay = "1m"`:         `resend_delay = "1s"`,
		`blind_after = "10m"`:         `blind_after = "3s"`,
		`timeout = "10s"`:             `timeout = "1s"`,
	} {
		if !strings.Contains(cfgText, old) {
			t.Fatalf("config lacks %q", old)
		}
		cfgText = strings.Replace(cfgText, old, repl, 1)
	}
	if err := os.WriteFile(cfgPath, []byte(cfgText), 0o600); err != nil {
		t.Fatal(err)
	}

	d, err := New(Options{ConfigFile: cfgPath, StoragePath: filepath.Join(dir, "data"), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()
	web := httptest.NewServer(d.Handler())
	defer web.Close()
	get := func(path string) (int, string) {
		resp, err := http.Get(web.URL + path)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	// latest returns the last state Alertmanager was told for each alert.
	latest := func() map[string]postedAlert {
		out := map[string]postedAlert{}
		for _, a := range amAlerts(t, am.all()) {
			out[a.Labels["alertname"]+"/"+a.Labels["service"]+a.Labels["rule"]] = a
		}
		return out
	}
	const tokenKey, stormKey = "SelfGeneratedTraffic/checkouttoken-minting", "FlushStorm/mediaredis-flush-storm"
	waitFor(t, 60*time.Second, "both incidents firing", func() bool {
		l := latest()
		_, a := l[tokenKey]
		_, b := l[stormKey]
		return a && b
	})
	starts := map[string]time.Time{tokenKey: latest()[tokenKey].StartsAt, stormKey: latest()[stormKey].StartsAt}
	blind := func() bool {
		_, m := get("/metrics")
		return strings.Contains(m, `emergent_rule_blind{rule="token-minting"} 1`) && strings.Contains(m, `emergent_rule_blind{rule="redis-flush-storm"} 1`)
	}
	seeing := func() bool {
		_, m := get("/metrics")
		code, _ := get("/-/ready")
		return code == 200 && strings.Contains(m, `emergent_rule_blind{rule="token-minting"} 0`) && strings.Contains(m, `emergent_rule_blind{rule="redis-flush-storm"} 0`)
	}
	// checkNothingResolved fails if any incident was reported resolved to Alertmanager or Slack.
	checkNothingResolved := func(stage string) {
		t.Helper()
		for _, a := range am.resolved(t) {
			if a.Labels["alertname"] != "EmergentDetectorBlind" {
				t.Errorf("%s: %s resolved (endsAt %s) on missing data", stage, a.Labels["alertname"], a.EndsAt)
			}
		}
		for _, s := range slack.all() {
			if strings.Contains(s, "RESOLVED") {
				t.Errorf("%s: Slack got a resolve on missing data", stage)
			}
		}
	}

	type result struct {
		fault       string
		blindAfter  time.Duration
		recoverTook time.Duration
	}
	var results []result
	faults := []struct {
		name  string
		fault faultproxy.Fault
		delay time.Duration
	}{
		{"HTTP 503", faultproxy.Status503, 0},
		{"response delayed past the timeout", faultproxy.Delay, 3 * time.Second},
		{"malformed JSON", faultproxy.Malformed, 0},
		{"truncated JSON", faultproxy.Truncated, 0},
		{"partial result with warnings", faultproxy.Partial, 0},
		{"connection refused", faultproxy.Refuse, 0},
	}
	for _, f := range faults {
		began := time.Now()
		proxy.Set(f.fault, f.delay)
		waitFor(t, 60*time.Second, f.name+": blind", blind)
		if code, _ := get("/-/ready"); code != http.StatusServiceUnavailable {
			t.Errorf("%s: /-/ready = %d while blind, want 503", f.name, code)
		}
		r := result{fault: f.name, blindAfter: time.Since(began)}
		healed := time.Now()
		proxy.Set(faultproxy.Pass, 0)
		waitFor(t, 60*time.Second, f.name+": recovery", seeing)
		r.recoverTook = time.Since(healed)
		results = append(results, r)
		checkNothingResolved(f.name)
	}

	// Prometheus killed and started again on the same data, on a new port.
	began := time.Now()
	prom.Stop()
	waitFor(t, 60*time.Second, "Prometheus down: blind", blind)
	restarted, err := stack.StartPrometheus(context.Background(), stack.PrometheusOptions{Dir: filepath.Dir(prom.DataDir)})
	if err != nil {
		t.Fatal(err)
	}
	defer restarted.Stop()
	r := result{fault: "Prometheus killed and restarted", blindAfter: time.Since(began)}
	healed := time.Now()
	proxy.SetTarget(restarted.URL)
	waitFor(t, 60*time.Second, "recovery after restart", seeing)
	r.recoverTook = time.Since(healed)
	results = append(results, r)
	checkNothingResolved("Prometheus restart")

	// The episodes carried on as the same alerts.
	waitFor(t, 30*time.Second, "incidents re-sent after the faults", func() bool {
		l := latest()
		return l[tokenKey].EndsAt.After(time.Now()) && l[stormKey].EndsAt.After(time.Now())
	})
	for k, want := range starts {
		if got := latest()[k].StartsAt; !got.Equal(want) {
			t.Errorf("%s: startsAt moved from %s to %s across faults", k, want, got)
		}
	}
	// The meta-alert reached Alertmanager, and was resolved once the daemon could see again.
	sawBlind, blindResolved := false, false
	for _, a := range amAlerts(t, am.all()) {
		sawBlind = sawBlind || a.Labels["alertname"] == "EmergentDetectorBlind"
	}
	for _, a := range am.resolved(t) {
		blindResolved = blindResolved || a.Labels["alertname"] == "EmergentDetectorBlind"
	}
	if !sawBlind || !blindResolved {
		t.Errorf("EmergentDetectorBlind: reached Alertmanager %v, resolved %v; want both", sawBlind, blindResolved)
	}
	firing := 0
	for _, s := range slack.all() {
		if strings.Contains(s, "FIRING") {
			firing++
		}
	}
	if firing != 2 {
		t.Errorf("Slack got %d firing posts, want 2 (one per episode, none repeated)", firing)
	}

	var table strings.Builder
	fmt.Fprintf(&table, "| fault | blind reported after | recovered after source healed | incidents resolved on missing data | Slack duplicates |\n|---|---|---|---|---|\n")
	for _, r := range results {
		fmt.Fprintf(&table, "| %s | %s | %s | 0 | 0 |\n", r.fault, r.blindAfter.Round(100*time.Millisecond), r.recoverTook.Round(100*time.Millisecond))
	}
	t.Logf("fault results (evaluation_interval 1s, blind_after 3s, timeout 1s):\n%s", table.String())
	if b, _ := json.Marshal(results); len(b) == 0 {
		t.Error("no results")
	}
}
