package sources

import "testing"

func TestFilteredQuery(t *testing.T) {
	one := map[string][]string{"service": {"checkout"}}
	for _, tc := range []struct {
		query  string
		filter map[string][]string
		want   string
	}{
		{`sum by (service) (rate(http_requests_total[2m]))`, one,
			`sum by (service) (rate(http_requests_total{service=~"checkout"}[2m]))`},
		// Every selector of the query, with its own matchers kept; values match as written.
		{`sum by (service) (resets(up[1h])) > 0 or sum by (service) (increase(redis_commands_total{cmd=~"flushdb|flushall"}[1h])) > 0`,
			map[string][]string{"service": {"a.b", "c+"}},
			`sum by (service) (resets(up{service=~"a\\.b|c\\+"}[1h])) > 0 or sum by (service) (increase(redis_commands_total{cmd=~"flushdb|flushall",service=~"a\\.b|c\\+"}[1h])) > 0`},
		{`redis_commands_total{cmd="get"}`, one, `redis_commands_total{cmd="get",service=~"checkout"}`},
		// Labels in a fixed order, whatever the map's.
		{`sum by (service, env) (x)`, map[string][]string{"service": {"a"}, "env": {"prod"}},
			`sum by (service, env) (x{env=~"prod",service=~"a"})`},
		{`max_over_time(rate(x[1m])[10m:30s])`, one, `max_over_time(rate(x{service=~"checkout"}[1m])[10m:30s])`},
	} {
		got, err := FilteredQuery(tc.query, tc.filter)
		if err != nil || got != tc.want {
			t.Errorf("FilteredQuery(%q) = %q, %v; want %q", tc.query, got, err, tc.want)
		}
	}
	if _, err := FilteredQuery(`rate(`, one); err == nil {
		t.Error("a query that does not parse: no error")
	}
}
