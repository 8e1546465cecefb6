package daemon

import (
	"reflect"
	"strings"
	"testing"

	"github.com/emergent-sh/emergent/config"
)

// A recording is a file people share: the configuration it carries keeps the rules and drops
// receivers, routes and every credential, and still loads to the same rules.
func TestReplayConfigDropsSecrets(t *testing.T) {
	const secrets = "hunter2|xoxb-0000-secret|T0/B0/webhooksecret|tok3n"
	text := `[global]
evaluation_interval = "15s"
external_labels = { cluster = "eu-1" }

[prometheus]
url = "https://emergent:hunter2@prometheus.example:9090/prom?token=tok3n"
timeout = "5s"
http_config_file = "prom-http.yml"

[[rules]]
name = "token-minting"
kind = "self_generated_traffic"
group_by = ["service"]
inbound = 'sum by (service) (rate(http_requests_total[2m]))'
for = "5m"
  [[rules.signals]]
  name = "token_mints"
  query = 'sum by (service) (rate(token_mint_count[2m]))'
  relation = "bounded"
  ceiling = 0.033

[[receivers]]
name = "slack"
type = "slack"
webhook_url = "https://hooks.slack.com/services/T0/B0/webhooksecret"

[[receivers]]
name = "bot"
type = "slack"
token = "xoxb-0000-secret"
channel = "#oncall"

[[routes]]
receiver = "slack"

[[routes]]
receiver = "bot"
`
	orig, err := config.Load([]byte(strings.Replace(text, `http_config_file = "prom-http.yml"`, "", 1)), "rules.toml")
	if err != nil {
		t.Fatal(err)
	}
	out, err := ReplayConfig([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range strings.Split(secrets, "|") {
		if strings.Contains(out, s) {
			t.Errorf("the recording's configuration holds the secret %q:\n%s", s, out)
		}
	}
	got, err := config.Load([]byte(out), "recording:rules.toml")
	if err != nil {
		t.Fatalf("the recording's configuration does not load: %v\n%s", err, out)
	}
	if !reflect.DeepEqual(got.Rules, orig.Rules) || !reflect.DeepEqual(got.Global, orig.Global) {
		t.Errorf("rules or global differ after the round trip:\n%+v\n%+v", got.Rules, orig.Rules)
	}
	if len(got.Receivers) != 0 || len(got.Routes) != 0 {
		t.Errorf("receivers %v and routes %v kept", got.Receivers, got.Routes)
	}
	if got.Prometheus.URL != "https://prometheus.example:9090/prom" {
		t.Errorf("prometheus url %q, want it without credentials", got.Prometheus.URL)
	}
}
