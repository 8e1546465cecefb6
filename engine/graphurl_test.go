package engine

import (
	"net/url"
	"strings"
	"testing"
)

// TestGraphURLCarriesNoCredentials: the graph link of an alert (Slack's "Open graph" button,
// generatorURL) keeps where prometheus.url or graph_url point, path prefix included, and drops
// their userinfo and query, which hold the daemon's credentials and tokens.
func TestGraphURLCarriesNoCredentials(t *testing.T) {
	rule := testConfig().Rules[0]
	group := map[string]string{"service": "checkout"}
	for _, tt := range []struct {
		name, url, graphURL, want string
	}{
		{"plain", "http://prometheus.example:9090", "", "http://prometheus.example:9090/graph?"},
		{"userinfo", "http://emergent:PLANTED@prometheus.example:9090", "", "http://prometheus.example:9090/graph?"},
		{"username only", "http://emergent@prometheus.example:9090/", "", "http://prometheus.example:9090/graph?"},
		{"query and prefix", "https://u:PLANTED@prometheus.example/prom/?token=PLANTED#x", "", "https://prometheus.example/prom/graph?"},
		{"graph_url", "http://u:PLANTED@10.0.0.1:9090", "https://viewer:PLANTED@graph.example/p?token=PLANTED", "https://graph.example/p/graph?"},
		{"no host", "prometheus.example:9090", "", ""},
		{"opaque", "http:u:PLANTED@prometheus.example", "", ""},
		{"unparsable", "http://u:PLANTED@[::1", "", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig()
			cfg.Prometheus.URL, cfg.Prometheus.GraphURL = tt.url, tt.graphURL
			got := (&Engine{cfg: cfg}).graphURL(rule, group)
			if strings.Contains(got, "PLANTED") || strings.Contains(got, "@") {
				t.Errorf("graph link carries credentials: %s", got)
			}
			if tt.want == "" {
				if got != "" {
					t.Errorf("got %q, want no link", got)
				}
				return
			}
			if !strings.HasPrefix(got, tt.want) {
				t.Fatalf("got %s, want it to start with %s", got, tt.want)
			}
			u, err := url.Parse(got)
			if err != nil {
				t.Fatal(err)
			}
			if q := u.Query(); q.Get("g0.expr") != `sum by (service) (rate(token_mint_count{service="checkout"}[2m]))` || q.Get("g1.expr") == "" {
				t.Errorf("link does not graph the group's signal and inbound: %v", q)
			}
		})
	}
}
