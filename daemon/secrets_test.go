package daemon

import (
	"encoding/base64"
	"fmt"
	"github.com/emergent-sh/emergent/internal/syncbuf"
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

	"github.com/emergent-sh/emergent/internal/promtest"
	"github.com/emergent-sh/emergent/internal/synth"
)

// TestSecretsInURLsNeverShown plants one password in the userinfo of prometheus.url (a real
// Prometheus without auth ignores the header), of two Alertmanager URLs, of a webhook URL (and
// its query) and of the Slack api_url, runs the daemon until the seeds' incidents fire, and
// looks for the password on every surface the daemon writes to: its logs (debug level, with a
// delivery error whose receiver echoes the request's credentials back), /metrics,
// /api/v1/status/config, /api/v1/episodes, the other web pages and the raw bodies Alertmanager,
// Slack and the webhook received. The credentials must still be what the daemon connects with.
func TestSecretsInURLsNeverShown(t *testing.T) {
	const pw = "PLANTEDpw7Q9xZ"
	withUser := func(rawURL, user string) string {
		return strings.Replace(rawURL, "http://", "http://"+user+":"+pw+"@", 1)
	}
	// The password as a client sends it: basic auth, base64 of user:password.
	basic := func(user string) string { return base64.StdEncoding.EncodeToString([]byte(user + ":" + pw)) }
	forms := []string{pw, basic("emergent"), basic("am"), basic("hook"), basic("slack")}

	end := time.Now().Truncate(15 * time.Second)
	prom := promtest.Start(t, promtest.Options{OpenMetrics: synth.IncidentHistory(end)})

	// authSeen wraps a receiver to record whether requests carried the planted credentials.
	var authMu sync.Mutex
	authSeen := map[string]bool{}
	withAuth := func(name string, h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			user, pass, ok := r.BasicAuth()
			authMu.Lock()
			authSeen[name] = authSeen[name] || (ok && user == name && pass == pw)
			authMu.Unlock()
			h.ServeHTTP(w, r)
		})
	}
	am, slack, hook, rejecting := &recorder{}, &recorder{}, &recorder{}, &recorder{}
	amSrv := httptest.NewServer(withAuth("am", am))
	defer amSrv.Close()
	slackSrv := httptest.NewServer(slack)
	defer slackSrv.Close()
	hookSrv := httptest.NewServer(withAuth("hook", hook))
	defer hookSrv.Close()
	// An Alertmanager that refuses every post with the request's credentials in its answer, so
	// that the logs hold a delivery error naming a URL with a password.
	rejectSrv := httptest.NewServer(withAuth("am", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rejecting.ServeHTTP(httptest.NewRecorder(), r)
		user, pass, _ := r.BasicAuth()
		http.Error(w, fmt.Sprintf("rejected %s (Authorization: %s; user %s, password %s)", r.URL, r.Header.Get("Authorization"), user, pass), http.StatusBadRequest)
	})))
	defer rejectSrv.Close()

	dir := t.TempDir()
	amURL, rejectURL := withUser(amSrv.URL, "am"), withUser(rejectSrv.URL, "am")
	cfgPath := testConfig(t, dir, withUser(prom.URL, "emergent"), amURL, slackSrv.URL)
	text, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	cfgText := string(text)
	for old, repl := range map[string]string{
		fmt.Sprintf("urls = [%q]", amURL): fmt.Sprintf("urls = [%q, %q]", amURL, rejectURL),
		// Unused by a webhook-mode Slack receiver, but served with the configuration.
		"name = \"slack\"\ntype = \"slack\"\n": fmt.Sprintf("name = \"slack\"\ntype = \"slack\"\napi_url = %q\n", withUser(slackSrv.URL, "slack")+"/api/?token="+pw),
	} {
		if !strings.Contains(cfgText, old) {
			t.Fatalf("config lacks %q", old)
		}
		cfgText = strings.Replace(cfgText, old, repl, 1)
	}
	cfgText += fmt.Sprintf(`
[[receivers]]
name = "hook"
type = "webhook"
url = %q

[[routes]]
receiver = "hook"
kinds = ["self_generated_traffic", "flush_storm"]
`, withUser(hookSrv.URL, "hook")+"/hook?token="+pw)
	if err := os.WriteFile(cfgPath, []byte(cfgText), 0o600); err != nil {
		t.Fatal(err)
	}

	var logs syncbuf.Buffer
	logText := logs.String
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	d, stop := startDaemon(t, Options{ConfigFile: cfgPath, StoragePath: filepath.Join(dir, "data"), Logger: logger})
	web := httptest.NewServer(d.Handler())
	defer web.Close()

	fired := func() bool {
		got := map[string]bool{}
		for _, a := range amAlerts(t, am.all()) {
			got[a.Labels["alertname"]+"/"+a.Labels["service"]] = true
		}
		return got["SelfGeneratedTraffic/checkout"] && got["FlushStorm/media"]
	}
	waitFor(t, 60*time.Second, "both incidents at every receiver and a delivery error logged", func() bool {
		return fired() && len(slack.all()) >= 2 && len(hook.all()) >= 1 && len(rejecting.all()) >= 1 &&
			strings.Contains(logText(), "Notification failed")
	})

	// Every page the daemon serves, while the episodes are active.
	surfaces := map[string]string{}
	for _, path := range []string{"/metrics", "/api/v1/status/config", "/api/v1/episodes", "/", "/-/ready", "/-/healthy"} {
		resp, err := http.Get(web.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s = %d %s", path, resp.StatusCode, b)
		}
		surfaces["GET "+path] = string(b)
	}
	stop() // the logs of the shutdown count too
	surfaces["logs"] = logText()
	for name, rec := range map[string]*recorder{"Alertmanager": am, "rejecting Alertmanager": rejecting, "Slack": slack, "webhook": hook} {
		surfaces[name+" bodies"] = strings.Join(rec.all(), "\n")
	}

	for name, text := range surfaces {
		for _, secret := range forms {
			if strings.Contains(text, secret) {
				t.Errorf("%s show the planted password (as %q):\n%s", name, secret, text)
			}
		}
	}

	// The surfaces still say what they are for: graph links to Prometheus, the URLs in the
	// served configuration, the delivery error.
	graph := prom.URL + "/graph?"
	if all, linked := strings.Count(surfaces["Alertmanager bodies"], `"generatorURL":"`), strings.Count(surfaces["Alertmanager bodies"], `"generatorURL":"`+graph); all == 0 || linked != all {
		t.Errorf("%d of %d generatorURLs at Alertmanager link %s", linked, all, graph)
	}
	for name, want := range map[string]string{
		"Slack bodies":              graph,
		"webhook bodies":            `"generatorURL":"` + graph,
		"GET /api/v1/episodes":      `"service": "checkout"`,
		"GET /api/v1/status/config": `"url": "http://xxxxx@` + strings.TrimPrefix(prom.URL, "http://") + `"`,
		"logs":                      "Notification failed",
	} {
		if !strings.Contains(surfaces[name], want) {
			t.Errorf("%s lack %s:\n%s", name, want, surfaces[name])
		}
	}
	for _, host := range []string{amSrv.URL, rejectSrv.URL, slackSrv.URL} {
		if h := strings.TrimPrefix(host, "http://"); !strings.Contains(surfaces["GET /api/v1/status/config"], "xxxxx@"+h) {
			t.Errorf("served config does not show %s (redacted)", h)
		}
	}

	// Redaction is for what is shown: the daemon still connects with the credentials (the
	// episodes fired from the Prometheus at prometheus.url; receivers got basic auth).
	authMu.Lock()
	defer authMu.Unlock()
	for _, name := range []string{"am", "hook"} {
		if !authSeen[name] {
			t.Errorf("the %s receiver never got the credentials of its URL", name)
		}
	}
}
