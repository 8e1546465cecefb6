package alerts

import (
	"strings"
	"testing"
	"time"
)

func TestSlackText(t *testing.T) {
	a := &Alert{
		Labels:       map[string]string{"alertname": "SelfGeneratedTraffic", "kind": "self_generated_traffic", "rule": "token-minting", "severity": "warning", "service": "checkout"},
		Annotations:  map[string]string{"summary": "service=\"checkout\": token mints 3.8/s"},
		StartsAt:     time.Date(2026, 11, 23, 19, 26, 30, 0, time.UTC),
		GeneratorURL: "http://prometheus:9090/graph?g0.expr=x",
		Details: Details{Unit: "token mints", ObservedPerSec: 3.8, ExpectedPerSec: 0.033, UnexplainedPct: 99.1,
			InboundPerSec: 4, InboundUsualSec: 4, InboundState: "normal", Instances: 4,
			Diagnosis: "4 instances do the work independently", Remedy: "Share the cache & lock"},
	}
	got := SlackText(a)
	for _, want := range []string{
		"FIRING: Self-generated traffic · token-minting · service=checkout",
		"Observed: 3.8 token mints/s · Expected: 0.033 token mints/s",
		"Instances: 4",
		"Diagnosis: 4 instances do the work independently",
		"Remedy: Share the cache & lock",
		"Graph: http://prometheus:9090/graph?g0.expr=x",
		"started 2026-11-23 19:26:30 UTC",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("SlackText lacks %q:\n%s", want, got)
		}
	}
}
