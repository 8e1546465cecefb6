package config

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestServedConfigRedactsURLs plants a password and a token in the userinfo and query of every
// URL of the configuration: the JSON that /api/v1/status/config serves holds neither, still
// says where each URL points, and the running configuration keeps them to connect with.
func TestServedConfigRedactsURLs(t *testing.T) {
	const pw, tok = "PLANTEDPASSWORD", "PLANTEDTOKEN"
	cfg, err := Load([]byte(`
[prometheus]
url = "http://emergent:`+pw+`@prometheus.example:9090/prom?token=`+tok+`"
graph_url = "https://viewer:`+pw+`@graph.example/prom/?token=`+tok+`"

[[receivers]]
name = "am"
type = "alertmanager"
urls = ["http://am:`+pw+`@am-1.example:9093/am?token=`+tok+`", "http://am-2.example:9093"]

[[receivers]]
name = "slack"
type = "slack"
token = "xoxb-`+tok+`"
channel = "#alerts"
api_url = "https://bot:`+pw+`@slack-proxy.example/api/?token=`+tok+`"

[[receivers]]
name = "hook"
type = "webhook"
url = "https://hook:`+pw+`@hooks.example/in?token=`+tok+`"

[[routes]]
receiver = "am"
`), "served.toml")
	if err != nil {
		t.Fatal(err)
	}
	want := *cfg
	wantURLs := append([]string(nil), cfg.Receivers[0].URLs...)

	for _, v := range []any{cfg, *cfg, cfg.Prometheus, &cfg.Receivers[0]} {
		served, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		for _, secret := range []string{pw, tok} {
			if strings.Contains(string(served), secret) {
				t.Errorf("served %T contains %s: %s", v, secret, served)
			}
		}
	}
	served, _ := json.Marshal(cfg)
	for _, where := range []string{
		"prometheus.example:9090/prom", "graph.example/prom/", "am-1.example:9093/am", `"http://am-2.example:9093"`,
		"slack-proxy.example/api/", `"url":"\u003csecret\u003e"`, // the webhook's url is a commoncfg.Secret
	} {
		if !strings.Contains(string(served), where) {
			t.Errorf("served config lacks %s: %s", where, served)
		}
	}
	var back struct {
		Prometheus struct {
			URL      string `json:"url"`
			GraphURL string `json:"graph_url"`
		} `json:"prometheus"`
	}
	if err := json.Unmarshal(served, &back); err != nil {
		t.Fatal(err)
	}
	if back.Prometheus.URL != "http://xxxxx@prometheus.example:9090/prom?xxxxx" {
		t.Errorf("served prometheus.url = %q", back.Prometheus.URL)
	}

	// What the daemon connects with is untouched.
	if cfg.Prometheus.URL != want.Prometheus.URL || !strings.Contains(cfg.Prometheus.URL, pw) ||
		!strings.Contains(cfg.Prometheus.GraphURL, pw) || !strings.Contains(cfg.Receivers[1].APIURL, tok) ||
		!strings.Contains(string(cfg.Receivers[2].URL), pw) {
		t.Errorf("marshalling changed the running configuration: %+v", cfg)
	}
	for i, u := range cfg.Receivers[0].URLs {
		if u != wantURLs[i] {
			t.Errorf("alertmanager url %d changed from %q to %q", i, wantURLs[i], u)
		}
	}
}
