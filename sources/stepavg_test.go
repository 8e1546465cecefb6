package sources

import (
	"testing"
	"time"
)

func TestStepAveragedQuery(t *testing.T) {
	for _, tc := range []struct{ query, want string }{
		{`sum by (service) (rate(token_mint_count[2m]))`, `sum by (service) (rate(token_mint_count[15m]))`},
		// Counts of what happened between two samples: windows that overlap, as the finer ones
		// did, scaled back to their own range.
		{`sum by (service) (increase(token_mint_count[3m]))`, `sum by (service) ((increase(token_mint_count[18m]) * 0.16666666666666666))`},
		// A count's scaling keeps its place in what reads it.
		{`a / increase(b[5m])`, `a / (increase(b[20m]) * 0.25)`},
		{`increase(b[15m])`, `(increase(b[30m]) * 0.5)`},
		{`rate(a[1m]) / rate(b[1h])`, `rate(a[15m]) / rate(b[1h])`},
		{`sum by (service) (rate(x[2m])) > 0`, `sum by (service) (rate(x[15m])) > 0`},
		{`sum by (service) (resets(redis_uptime_in_seconds[5m])) > 0`, `sum by (service) ((resets(redis_uptime_in_seconds[20m]) * 0.25)) > 0`},
		{`changes(x[3m])`, `(changes(x[18m]) * 0.16666666666666666)`},
		{`resets(x[1h])`, `resets(x[1h])`},
		// Not a mean when widened: left alone.
		{`max_over_time(x[5m])`, `max_over_time(x[5m])`},
		{`max_over_time(rate(x[1m])[10m:30s])`, `max_over_time(rate(x[1m])[10m:30s])`},
		{`sum by (service) (redis_db_keys)`, `sum by (service) (redis_db_keys)`},
	} {
		got, err := StepAveragedQuery(tc.query, 15*time.Minute)
		if err != nil || got != tc.want {
			t.Errorf("StepAveragedQuery(%q) = %q, %v; want %q", tc.query, got, err, tc.want)
		}
	}
	if _, err := StepAveragedQuery(`rate(`, 15*time.Minute); err == nil {
		t.Error("a query that does not parse: no error")
	}
}
