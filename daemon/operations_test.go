package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emergent-sh/emergent/internal/promtest"
	"github.com/emergent-sh/emergent/internal/stack"
	"github.com/emergent-sh/emergent/internal/synth"
	"github.com/prometheus/exporter-toolkit/web"
)

// listenFlags serves the daemon's endpoints on addr only, as --web.listen-address would.
func listenFlags(addr string) *web.FlagConfig {
	systemd, file := false, ""
	return &web.FlagConfig{WebListenAddresses: &[]string{addr}, WebSystemdSocket: &systemd, WebConfigFile: &file}
}

// freeAddr is a free 127.0.0.1 address, picked before the process that will listen on it starts.
func freeAddr(t *testing.T) string {
	t.Helper()
	port, err := stack.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
}

// httpGet returns the status and body of a GET, or 0 when the server does not answer.
func httpGet(u string) (int, string) {
	resp, err := http.Get(u)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// startDaemon runs a daemon until the test ends (or stop is called).
func startDaemon(t *testing.T, opts Options) (d *Daemon, stop func()) {
	t.Helper()
	if opts.Logger == nil { // shown when the test fails or runs with -v
		opts.Logger = slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
			t.Log(strings.TrimSpace(string(p)))
			return len(p), nil
		}), nil))
	}
	d, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("daemon: %v", err)
		}
	}
	t.Cleanup(stop)
	return d, stop
}

// reload asks the running daemon to reload, as POST /-/reload does: the evaluation loop
// reloads.
func reload(t *testing.T, d *Daemon) {
	t.Helper()
	done := make(chan error, 1)
	d.reloadRequest <- done
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// hangingServer accepts requests and answers none until the test ends; inFlight counts the
// requests it holds.
func hangingServer(t *testing.T, answer func(http.ResponseWriter, *http.Request) bool) (srv *httptest.Server, inFlight *atomic.Int64) {
	inFlight = &atomic.Int64{}
	release := make(chan struct{})
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if answer != nil && answer(w, r) {
			return
		}
		inFlight.Add(1)
		defer inFlight.Add(-1)
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(func() {
		close(release)
		srv.Close()
	})
	return srv, inFlight
}

// episodeStarts reads /api/v1/episodes as kind/service → start.
func episodeStarts(t *testing.T, base string) map[string]time.Time {
	t.Helper()
	code, body := httpGet(base + "/api/v1/episodes")
	if code != http.StatusOK {
		return nil
	}
	var eps []episodeJSON
	if err := json.Unmarshal([]byte(body), &eps); err != nil {
		t.Fatalf("episodes: %v: %s", err, body)
	}
	out := map[string]time.Time{}
	for _, ep := range eps {
		out[ep.Kind+"/"+ep.Labels["service"]] = ep.Start
	}
	return out
}

// TestStartedBeforePrometheus starts the daemon while nothing listens at its Prometheus URL (as
// docker-compose or Kubernetes may), then starts a real Prometheus there. Until history loads
// the daemon is not ready and says why; once it loads, the episodes under way come back with
// the same starts and the same usual inbound as a daemon started after Prometheus.
func TestStartedBeforePrometheus(t *testing.T) {
	end := time.Now().Truncate(15 * time.Second)
	promAddr := freeAddr(t)
	dir := t.TempDir()
	sink := httptest.NewServer(&recorder{})
	defer sink.Close()
	cfgPath := testConfig(t, dir, "http://"+promAddr, sink.URL, sink.URL)
	early := freeAddr(t)
	startDaemon(t, Options{ConfigFile: cfgPath, Web: listenFlags(early), Now: func() time.Time { return end }})
	earlyURL := "http://" + early

	waitFor(t, 30*time.Second, "a failed history attempt reported by /-/ready", func() bool {
		code, body := httpGet(earlyURL + "/-/ready")
		return code == http.StatusServiceUnavailable && strings.Contains(body, "the last attempt failed")
	})
	if _, body := httpGet(earlyURL + "/metrics"); !strings.Contains(body, `emergent_history_loaded{rule="token-minting"} 0`) {
		t.Errorf("/metrics does not say history is not loaded:\n%s", grepLines(body, "emergent_history_loaded"))
	}

	prom := promtest.Start(t, promtest.Options{OpenMetrics: synth.IncidentHistory(end), Addr: promAddr})
	promUp := time.Now()
	waitFor(t, 60*time.Second, "the early daemon to become ready", func() bool {
		code, _ := httpGet(earlyURL + "/-/ready")
		return code == http.StatusOK
	})
	t.Logf("ready %s after Prometheus was", time.Since(promUp).Round(time.Millisecond))
	if _, body := httpGet(earlyURL + "/metrics"); !strings.Contains(body, `emergent_history_loaded{rule="token-minting"} 1`) {
		t.Errorf("/metrics does not say history loaded:\n%s", grepLines(body, "emergent_history_loaded"))
	}

	late := freeAddr(t)
	startDaemon(t, Options{ConfigFile: cfgPath, PrometheusURL: prom.URL, Web: listenFlags(late), Now: func() time.Time { return end }})
	lateURL := "http://" + late
	waitFor(t, 60*time.Second, "the reference daemon to become ready", func() bool {
		code, _ := httpGet(lateURL + "/-/ready")
		return code == http.StatusOK
	})
	got, want := episodeStarts(t, earlyURL), episodeStarts(t, lateURL)
	if len(want) == 0 {
		t.Fatal("the reference daemon has no active episode; the scenario no longer tests anything")
	}
	for k, w := range want {
		if g, ok := got[k]; !ok || !g.Equal(w) {
			t.Errorf("episode %s: started-early daemon has start %v (present %v), reference %v", k, g, ok, w)
		}
	}
	if len(got) != len(want) {
		t.Errorf("started-early daemon has episodes %v, reference %v", got, want)
	}
	_, body := httpGet(earlyURL + "/api/v1/episodes")
	if !strings.Contains(body, `"inbound_usual"`) {
		t.Errorf("started-early daemon's episodes have no usual inbound:\n%s", body)
	}
}

// TestRestartKeepsEpisodeOlderThanReplay restarts the daemon a minute later (by its clock)
// while the checkout incident began 40 minutes before. A real Prometheus scrapes the first
// daemon's /metrics; the second reads back what it exported. Two ways: with replay = 10m, less
// than the rules remember, the second replays that window and keeps the start it read back;
// with average_over = 5m (the rules remember 30 minutes) and replay = 2h, it restores the first
// one's state and replays only those 30 minutes; with the state file the first saved at
// shutdown, it reads no history at all. Each way the episode keeps its start: no second Slack
// page, the same Alertmanager startsAt.
func TestRestartKeepsEpisodeOlderThanReplay(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit map[string]string
		// keepState keeps the state file the first daemon saved at shutdown; without it the
		// second reads back from Prometheus.
		keepState        bool
		restored, loaded bool
	}{
		{"replay shorter than the episode", map[string]string{`replay = "2h"`: `replay = "10m"`}, false, false, false},
		{"state restored", map[string]string{`average_over = "1h"`: `average_over = "5m"`}, false, true, false},
		{"state saved locally", nil, true, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			end := time.Now().Truncate(15 * time.Second)
			addr := freeAddr(t)
			prom := promtest.Start(t, promtest.Options{OpenMetrics: synth.IncidentHistory(end), ScrapeTargets: []string{addr}, ScrapeInterval: time.Second})
			am, slack, cfgPath, _ := olderThanReplay(t, prom.URL, tc.edit)
			storage := filepath.Join(filepath.Dir(cfgPath), "data")
			checkoutPosts := func() int { return checkoutPages(slack) }

			now := time.Now()
			_, stop := startDaemon(t, Options{ConfigFile: cfgPath, StoragePath: storage, Web: listenFlags(addr), Now: func() time.Time { return now }})
			waitFor(t, 60*time.Second, "the checkout page", func() bool { return checkoutPosts() == 1 })
			first := episodeStarts(t, "http://"+addr)["self_generated_traffic/checkout"]
			waitFor(t, 30*time.Second, "Prometheus to store the episode's start and the loaded history", func() bool {
				q := url.Values{"query": {`emergent_episode_start_timestamp_seconds{service="checkout"} and on() count(emergent_history_loaded == 1) == 2`}}
				_, body := httpGet(prom.URL + "/api/v1/query?" + q.Encode())
				return strings.Contains(body, strconv.FormatInt(first.Unix(), 10))
			})
			stop()
			if !tc.keepState {
				if err := os.Remove(filepath.Join(storage, engineStateFile)); err != nil {
					t.Fatalf("the first daemon saved no state: %v", err)
				}
			}

			before := len(am.all())
			later := now.Add(time.Minute) // the replay window moves a baseline step on
			var logged strings.Builder
			var logMu sync.Mutex
			logger := slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
				t.Log(strings.TrimSpace(string(p)))
				logMu.Lock()
				defer logMu.Unlock()
				return logged.Write(p)
			}), nil))
			startDaemon(t, Options{ConfigFile: cfgPath, StoragePath: storage, Web: listenFlags(freeAddr(t)), Now: func() time.Time { return later }, Logger: logger})
			var after []postedAlert
			waitFor(t, 60*time.Second, "the restarted daemon's checkout alert at Alertmanager", func() bool {
				after = nil
				for _, a := range amAlerts(t, am.all()[before:]) {
					if a.Labels["service"] == "checkout" {
						after = append(after, a)
					}
				}
				return len(after) > 0
			})
			for _, a := range after {
				if !a.StartsAt.Equal(first) {
					t.Errorf("after the restart Alertmanager got the checkout alert with startsAt %v, first %v", a.StartsAt, first)
				}
			}
			time.Sleep(2 * time.Second) // a second page would be posted with the alert above
			if n := checkoutPosts(); n != 1 {
				t.Errorf("Slack got %d checkout pages across the restart, want 1", n)
			}
			logMu.Lock()
			restored := strings.Contains(logged.String(), "state restored from an earlier process")
			loaded := strings.Contains(logged.String(), "evaluation state loaded")
			past := grepLines(logged.String(), "past episodes read back")
			logMu.Unlock()
			// Read back from Prometheus, the checkout episode the first daemon exported is among
			// the episodes its history does not learn from.
			if !tc.keepState && (past == "" || strings.Contains(past, "episodes=0")) {
				t.Errorf("the restart read back no past episode from Prometheus: %q", past)
			}
			if restored != tc.restored || loaded != tc.loaded {
				t.Errorf("the restart restored the earlier state from Prometheus: %v, want %v; loaded it from the storage path: %v, want %v",
					restored, tc.restored, loaded, tc.loaded)
			}
		})
	}
}

// grepLines keeps the lines of text that contain s.
func grepLines(text, s string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, s) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestEndpointsAnswerWhileQueriesHang points the daemon at a Prometheus that accepts queries
// and never answers. While its history queries hang (up to the 10 s timeout), /metrics,
// /-/ready, /-/healthy and the episodes API must answer: Prometheus scraping emergentd and
// Kubernetes probes fail exactly when the backend is slow otherwise. Each answer must arrive
// while a query is still hanging; the latencies are logged, not asserted (shared machines).
func TestEndpointsAnswerWhileQueriesHang(t *testing.T) {
	hang, inFlight := hangingServer(t, func(w http.ResponseWriter, r *http.Request) bool {
		if r.ParseForm() == nil && strings.Contains(r.Form.Get("query"), "emergent_episode_start") {
			io.WriteString(w, `{"status":"success","data":{"resultType":"matrix","result":[]}}`)
			return true // the start read-back answers: what hangs is the history
		}
		return false
	})
	dir := t.TempDir()
	cfgPath := testConfig(t, dir, hang.URL, hang.URL, hang.URL)
	addr := freeAddr(t)
	startDaemon(t, Options{ConfigFile: cfgPath, Web: listenFlags(addr)})
	waitFor(t, 10*time.Second, "a query to hang", func() bool { return inFlight.Load() > 0 })

	var took []time.Duration
	for range 20 {
		for _, path := range []string{"/metrics", "/-/ready", "/-/healthy", "/api/v1/episodes"} {
			began := time.Now()
			code, _ := httpGet("http://" + addr + path)
			took = append(took, time.Since(began))
			if code == 0 {
				t.Fatalf("%s did not answer", path)
			}
			if inFlight.Load() == 0 {
				t.Fatalf("%s answered only after the hanging queries ended (took %s)", path, took[len(took)-1])
			}
		}
	}
	slices.Sort(took)
	t.Logf("%d answers while queries hung: p50 %s, p99 %s, max %s", len(took),
		took[len(took)/2], took[len(took)*99/100], took[len(took)-1])
}

// TestReloadThatChangesARuleKeepsItsEpisodes: a reload that changes a rule builds a new engine,
// which replays only `replay`; the episode it finds older than that keeps the start the old
// engine had (handed over, not read back: this Prometheus does not scrape emergentd), so
// Alertmanager's startsAt and the Slack thread stay.
func TestReloadThatChangesARuleKeepsItsEpisodes(t *testing.T) {
	end := time.Now().Truncate(15 * time.Second)
	prom := promtest.Start(t, promtest.Options{OpenMetrics: synth.IncidentHistory(end)})
	am, slack, cfgPath, base := olderThanReplay(t, prom.URL, map[string]string{`replay = "2h"`: `replay = "10m"`})
	const before, after = `resolve_for = "5m"`, `resolve_for = "6m"`
	if !strings.Contains(base, before) {
		t.Fatalf("rules.toml no longer contains %q; update the test", before)
	}
	var clock atomic.Int64
	clock.Store(end.UnixNano())
	d, _ := startDaemon(t, Options{ConfigFile: cfgPath, Now: func() time.Time { return time.Unix(0, clock.Load()) }})
	checkout := func(from int) []postedAlert {
		var out []postedAlert
		for _, a := range amAlerts(t, am.all()[from:]) {
			if a.Labels["service"] == "checkout" {
				out = append(out, a)
			}
		}
		return out
	}
	waitFor(t, 60*time.Second, "the checkout alert", func() bool { return len(checkout(0)) > 0 })
	first := checkout(0)[0].StartsAt

	if err := os.WriteFile(cfgPath, []byte(strings.Replace(base, before, after, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	clock.Store(end.Add(time.Minute).UnixNano()) // the new engine's replay window starts a minute later
	n := len(am.all())
	reload(t, d)
	waitFor(t, 60*time.Second, "the checkout alert after the reload", func() bool { return len(checkout(n)) > 0 })
	for _, a := range checkout(n) {
		if !a.StartsAt.Equal(first) {
			t.Errorf("after the reload checkout's startsAt is %v, before %v", a.StartsAt, first)
		}
	}
	posts := checkoutPages(slack)
	if posts != 1 {
		t.Errorf("Slack got %d checkout pages across the reload, want 1", posts)
	}
}

// TestReloadDoesNotWaitOnADownReceiver: while Alertmanager hangs on a delivery, a reload that
// changes the receivers completes at once; the old receivers finish in the background (the
// reload used to wait up to 10 s for them, holding up evaluation).
func TestReloadDoesNotWaitOnADownReceiver(t *testing.T) {
	end := time.Now().Truncate(15 * time.Second)
	prom := promtest.Start(t, promtest.Options{OpenMetrics: synth.IncidentHistory(end)})
	hang, inFlight := hangingServer(t, nil)
	sink := httptest.NewServer(&recorder{})
	defer sink.Close()
	dir := t.TempDir()
	cfgPath := testConfig(t, dir, prom.URL, hang.URL, sink.URL)
	d, _ := startDaemon(t, Options{ConfigFile: cfgPath, Now: func() time.Time { return end }})
	waitFor(t, 60*time.Second, "a delivery to hang at Alertmanager", func() bool { return inFlight.Load() > 0 })

	text, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	changed := strings.Replace(string(text), fmt.Sprintf("urls = [%q]", hang.URL), fmt.Sprintf("urls = [%q]", sink.URL), 1)
	if changed == string(text) {
		t.Fatal("the test config no longer names the Alertmanager URL as expected")
	}
	if err := os.WriteFile(cfgPath, []byte(changed), 0o600); err != nil {
		t.Fatal(err)
	}
	reload(t, d)
	if inFlight.Load() == 0 {
		t.Fatal("the reload returned only after the hanging delivery ended")
	}
}

// olderThanReplay writes testConfig with the edits given (replay = 10m makes the seeds'
// incidents begin before the replay window) and rates over 5m instead of 2m, so a daemon whose
// clock runs a minute or two past the data's end (Prometheus's start-up plus a restart) still
// sees them. History is 2h, not testConfig's 1h: each group relearns once an hour at a phase
// its key fixes, and a relearn late in a 10-minute replay over 1h that is more than half
// incident (checkout's began 40 minutes before the end) learns the incident as normal, so
// the first page never came when the end fell at minutes 20–25 of an hour (CI, 22:20). It
// returns the Alertmanager and Slack recorders, the file and its text.
func olderThanReplay(t *testing.T, promURL string, edit map[string]string) (am, slack *recorder, path, text string) {
	t.Helper()
	am, slack = &recorder{}, &recorder{}
	amSrv, slackSrv := httptest.NewServer(am), httptest.NewServer(slack)
	t.Cleanup(amSrv.Close)
	t.Cleanup(slackSrv.Close)
	path = testConfig(t, t.TempDir(), promURL, amSrv.URL, slackSrv.URL)
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	text = strings.ReplaceAll(string(raw), "[2m]", "[5m]")
	text = strings.Replace(text, `history = "1h"`, `history = "2h"`, 1)
	for old, repl := range edit {
		if !strings.Contains(text, old) {
			t.Fatalf("the test configuration no longer contains %q", old)
		}
		text = strings.Replace(text, old, repl, 1)
	}
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return am, slack, path, text
}

// checkoutPages counts the Slack pages of the checkout incident.
func checkoutPages(slack *recorder) int {
	n := 0
	for _, b := range slack.all() {
		if strings.Contains(b, "FIRING") && strings.Contains(b, "checkout") {
			n++
		}
	}
	return n
}
