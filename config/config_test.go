package config

import (
	"encoding/json"
	"fmt"
	"math"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestShippedRulesLoad(t *testing.T) {
	cfg, err := LoadFile(filepath.Join("..", "rules.toml"))
	if err != nil {
		t.Fatalf("shipped rules.toml: %v", err)
	}
	if len(cfg.Rules) != 2 {
		t.Fatalf("want 2 rules, got %d", len(cfg.Rules))
	}
	if got := time.Duration(cfg.Global.EvaluationInterval); got != 30*time.Second {
		t.Errorf("evaluation_interval = %s", got)
	}
	if cfg.Rules[1].MinFlushes != 3 || cfg.Rules[0].Hysteresis != 0.8 {
		t.Errorf("defaults not applied: %+v", cfg.Rules[1])
	}
	for _, r := range cfg.Rules {
		if got := time.Duration(r.RecurWithin); got != 2*time.Hour {
			t.Errorf("%s: recur_within = %s, want the shipped 2h", r.Name, got)
		}
	}
}

// sgtRule is a self_generated_traffic rule with one line of its own (%s) among its keys.
const sgtRule = `
[[rules]]
name = "token-minting"
kind = "self_generated_traffic"
group_by = ["service"]
inbound = 'sum by (service) (rate(http_requests_total[2m]))'
average_over = "1h"
%s
  [[rules.signals]]
  name = "token_mints"
  relation = "bounded"
  query = 'sum by (service) (rate(token_mint_count[2m]))'
`

// stormRule is a flush_storm rule with one line of its own (%s) among its keys.
const stormRule = `
[[rules]]
name = "redis-flush-storm"
kind = "flush_storm"
group_by = ["service"]
flushes = 'redis_commands_total{cmd=~"flushdb|flushall"}'
%s
`

// recur_within left out is average_over for self-generated traffic and never for a flush storm
// (which has no lulls to cap), so configurations written before it keep their episodes;
// written, even as zero, it is what it says.
func TestRecurWithinDefaults(t *testing.T) {
	for _, tc := range []struct {
		rule, line string
		want       time.Duration
	}{
		{sgtRule, "", time.Hour},
		{sgtRule, `recur_within = "0s"`, 0},
		{sgtRule, `recur_within = "3h"`, 3 * time.Hour},
		{stormRule, "", 0},
		{stormRule, `recur_within = "2h"`, 2 * time.Hour},
	} {
		cfg, err := Load([]byte(fmt.Sprintf(tc.rule, tc.line)), "rules.toml")
		if err != nil {
			t.Fatalf("%q: %v", tc.line, err)
		}
		if got := time.Duration(cfg.Rules[0].RecurWithin); got != tc.want {
			t.Errorf("%s %q: recur_within = %s, want %s", cfg.Rules[0].Kind, tc.line, got, tc.want)
		}
	}
}

// cache_refill left out is the hour the shipped queries' ranges held a reset for; written, even
// as zero, it is what it says; a flush-storm rule does not read it.
func TestCacheRefillDefaults(t *testing.T) {
	for _, tc := range []struct {
		rule, line string
		want       time.Duration
		err        string
	}{
		{sgtRule, "", time.Hour, ""},
		{sgtRule, `cache_refill = "0s"`, 0, ""},
		{sgtRule, `cache_refill = "30m"`, 30 * time.Minute, ""},
		{stormRule, `cache_refill = "30m"`, 0, "cache_refill: is read by kind self_generated_traffic only"},
		{sgtRule, `cache_resets = 'sum by (service) (resets(redis_uptime_in_seconds[10s])) > 0'`, 0,
			"cache_resets: resets() reads [10s], not longer than evaluation_interval 30s"},
		{sgtRule, `cache_resets = 'sum by (service) (increase(redis_commands_total[30s])) > 0'`, 0,
			"cache_resets: increase() reads [30s], not longer than evaluation_interval 30s"},
	} {
		cfg, err := Load([]byte(fmt.Sprintf(tc.rule, tc.line)), "rules.toml")
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: error %v, want %q", tc.line, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%q: %v", tc.line, err)
		}
		if got := time.Duration(cfg.Rules[0].CacheRefill); got != tc.want {
			t.Errorf("%q: cache_refill = %s, want %s", tc.line, got, tc.want)
		}
	}
}

// deploy_settle left out is twice settle, whatever settle is; written, it is what it says.
func TestDeploySettleDefaultsToTwiceSettle(t *testing.T) {
	for _, tc := range []struct {
		line         string
		settle, want time.Duration
	}{
		{"", 5 * time.Minute, 10 * time.Minute},
		{`settle = "4m"`, 4 * time.Minute, 8 * time.Minute},
		{"settle = \"4m\"\ndeploy_settle = \"3m\"", 4 * time.Minute, 3 * time.Minute},
	} {
		cfg, err := Load([]byte(fmt.Sprintf(sgtRule, tc.line)), "rules.toml")
		if err != nil {
			t.Fatalf("%q: %v", tc.line, err)
		}
		r := cfg.Rules[0]
		if time.Duration(r.Settle) != tc.settle || time.Duration(r.DeploySettle) != tc.want {
			t.Errorf("%q: settle %s, deploy_settle %s; want %s, %s", tc.line, r.Settle, r.DeploySettle, tc.settle, tc.want)
		}
	}
}

func TestInvalidConfigs(t *testing.T) {
	tests := []struct {
		file string
		want string // expected "file:line: message" fragment
	}{
		{"invalid-syntax.toml", "invalid-syntax.toml:2: "},
		{"invalid-unknown-key.toml", `invalid-unknown-key.toml:9: unknown key "rules.windw"`},
		{"invalid-wrong-type.toml", "invalid-wrong-type.toml:6: "},
		{"invalid-zero-interval.toml", `invalid-zero-interval.toml:2: global.evaluation_interval: must be a positive duration`},
		{"invalid-negative-for.toml", `invalid-negative-for.toml:6: `},
		{"invalid-bad-duration.toml", `invalid-bad-duration.toml:2: `},
		{"invalid-promql.toml", `invalid-promql.toml:11: rules[0].signals[0].query: invalid PromQL`},
		{"invalid-duplicate-rule.toml", `invalid-duplicate-rule.toml:8: rules[1].name: duplicate rule name "storm"`},
		{"invalid-missing-secret-file.toml", `invalid-missing-secret-file.toml:4: receivers[0].webhook_url_file: read secret`},
		{"invalid-no-routes.toml", `no [[routes]] sends alerts to them`},
		{"invalid-route-receiver.toml", `invalid-route-receiver.toml:7: routes[0].receiver: no receiver named "alertmanger"`},
		{"invalid-bounded-negative-ceiling.toml", `invalid-bounded-negative-ceiling.toml:10: rules[0].signals[0].ceiling: must not be negative`},
		{"invalid-secret-url.toml", `invalid-secret-url.toml:4: receivers[0].webhook_url: must be an http(s) URL`},
		{"invalid-too-deep.toml", `invalid-too-deep.toml:5: nested more than 32 levels deep`},
		{"invalid-negative-limit.toml", `invalid-negative-limit.toml:6: rules[0].limit: must not be negative`},
		{"invalid-storm-average-over.toml", `invalid-storm-average-over.toml:6: rules[0].average_over: is read by kind self_generated_traffic only; a flush_storm rule does not use it`},
		{"invalid-negative-recur-within.toml", `invalid-negative-recur-within.toml:6: rules.recur_within: not a valid duration`},
		{"invalid-zero-deploy-settle.toml", `invalid-zero-deploy-settle.toml:7: rules[0].deploy_settle: must be a positive duration`},
		{"invalid-replica-scaling-only.toml", `invalid-replica-scaling-only.toml:11: rules[0].signals[0].replica_scaling_only: needs the rule's replicas query`},
		{"invalid-replica-count.toml", `invalid-replica-count.toml:7: rules[0].replica_count: needs the rule's replicas query`},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			_, err := LoadFile(filepath.Join("testdata", tc.file))
			if err == nil {
				t.Fatal("loaded without error")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error\n  %v\nwant it to contain\n  %s", err, tc.want)
			}
			if strings.Contains(err.Error(), "SECRETSECRET") {
				t.Errorf("error leaks a secret: %v", err)
			}
		})
	}
}

func TestSecretsResolvedAndNeverServed(t *testing.T) {
	t.Setenv("EMERGENT_TEST_SLACK_TOKEN", "xoxb-SECRETTOKEN")
	cfg, err := LoadFile(filepath.Join("testdata", "good-secrets.toml"))
	if err != nil {
		t.Fatal(err)
	}
	if got := string(cfg.Receivers[0].WebhookURL); got != "https://hooks.slack.com/services/T000/B000/SECRETSECRET" {
		t.Errorf("webhook_url_file not resolved: %q", got)
	}
	if got := string(cfg.Receivers[1].Token); got != "xoxb-SECRETTOKEN" {
		t.Errorf("token_env not resolved: %q", got)
	}
	served, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{"SECRETSECRET", "SECRETTOKEN"} {
		if strings.Contains(string(served), secret) {
			t.Errorf("served config contains %s: %s", secret, served)
		}
	}
}

func TestMissingEnvSecret(t *testing.T) {
	_, err := Load([]byte("[[receivers]]\nname = \"s\"\ntype = \"slack\"\ntoken_env = \"EMERGENT_UNSET_VAR_FOR_TEST\"\nchannel = \"#x\"\n\n[[routes]]\nreceiver = \"s\"\n"), "inline.toml")
	if err == nil || !strings.Contains(err.Error(), "inline.toml:4: receivers[0].token_env: environment variable EMERGENT_UNSET_VAR_FOR_TEST is not set") {
		t.Fatalf("got %v", err)
	}
}

func TestLineIndex(t *testing.T) {
	data := []byte(`[global]
history = "7d"

[[rules]]
name = "a"
  [[rules.signals]]
  name = "x"
  [[rules.signals]]
  query = '''
multi = "line"
'''
  name = "y"

[[rules]]
name = "b"
  [[rules.signals]]
  name = "z"
`)
	idx := indexLines(data)
	for path, want := range map[string]int{
		"global.history":            2,
		"rules[0].name":             5,
		"rules[0].signals[0].name":  7,
		"rules[0].signals[1].name":  12,
		"rules[1].name":             15,
		"rules[1].signals[0].name":  17,
		"rules[1].signals[0].query": 16, // falls back to the table header
	} {
		if got := idx.line(path); got != want {
			t.Errorf("line(%q) = %d, want %d", path, got, want)
		}
	}
}

func TestEventQuantum(t *testing.T) {
	for _, tc := range []struct {
		query  string
		want   float64
		window time.Duration
	}{
		{`sum by (service) (rate(token_cache_misses[2m]))`, 1.0 / 120, 2 * time.Minute},
		{`sum by (service) (increase(token_cache_misses[5m]))`, 1, 5 * time.Minute},
		{`rate(a[1m]) / rate(b[5m])`, 1.0 / 60, time.Minute},
		{`sum by (service) (redis_db_keys)`, 0, 0},
		{`max_over_time(x[5m])`, 0, 0},
		{`rate(`, 0, 0},
	} {
		if got, window := eventQuantum(tc.query); math.Abs(got-tc.want) > 1e-12 || window != tc.window {
			t.Errorf("eventQuantum(%q) = %g, %s, want %g, %s", tc.query, got, window, tc.want, tc.window)
		}
	}
}

// TestBlindMetaAlertIsRoutable: a route may send the detector_blind meta-alert on its own, like
// the anomaly kinds (it was rejected as an unknown kind).
func TestBlindMetaAlertIsRoutable(t *testing.T) {
	text := `[[receivers]]
name = "oncall"
type = "alertmanager"
urls = ["http://127.0.0.1:9093"]

[[routes]]
receiver = "oncall"
kinds = ["detector_blind"]
`
	cfg, err := Load([]byte(text), "blind.toml")
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Routes[0].Kinds; len(got) != 1 || got[0] != KindDetectorBlind {
		t.Errorf("kinds %v", got)
	}
	if cfg.Global.GroupMetricsLimit != DefaultGroupMetricsLimit {
		t.Errorf("group_metrics_limit %d, want the default %d", cfg.Global.GroupMetricsLimit, DefaultGroupMetricsLimit)
	}
}
