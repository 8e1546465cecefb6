package alerts

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/slack-go/slack/slacktest"

	"github.com/emergent-sh/emergent/config"
)

// t0 is the evaluation time of most tests.
var t0 = time.Date(2025, 3, 14, 9, 30, 0, 0, time.UTC)

// testAlert is a self-generated-traffic alert for service, firing since start, resolved at
// end unless end is zero.
func testAlert(service string, start, end time.Time) *Alert {
	return &Alert{
		Labels: map[string]string{
			"alertname": "SelfGeneratedTraffic",
			"kind":      "self_generated_traffic",
			"rule":      "token-cache",
			"severity":  "critical",
			"service":   service,
		},
		Annotations: map[string]string{
			"summary":     service + " mints tokens nobody asked for",
			"description": "0.96 token mints per inbound request, expected 0.002",
		},
		StartsAt:     start,
		EndsAt:       end,
		GeneratorURL: "http://prometheus:9090/graph?g0.expr=rate%28token_mint_count%5B5m%5D%29",
		Details: Details{
			Unit:            "token mints",
			ObservedPerSec:  11.52,
			ExpectedPerSec:  0.02412,
			UnexplainedPct:  99.79,
			InboundPerSec:   12,
			InboundUsualSec: 11.2,
			InboundState:    "normal",
			Instances:       12,
			Diagnosis:       "12 instances mint tokens independently; mints track instance count, not demand → cache is not shared.",
			Remedy:          "Share the token cache (Redis) and take a lock around minting.",
		},
	}
}

// testGlobal is a global section with round numbers (firing alerts are valid in
// Alertmanager for 4·max(30s, 1m) = 4m) and one external label.
func testGlobal() config.Global {
	return config.Global{
		EvaluationInterval: model.Duration(30 * time.Second),
		ResendDelay:        model.Duration(time.Minute),
		ResolvedRetention:  model.Duration(15 * time.Minute),
		ExternalLabels:     map[string]string{"cluster": "eu-1"},
	}
}

// fastRetrier retries after at most a few milliseconds of real time.
var fastRetrier = Retrier{Base: time.Millisecond, Max: 5 * time.Millisecond}

// startManager builds a Manager for tests (HTTP clients from http.DefaultTransport, a fresh
// registry) and stops it at cleanup.
func startManager(t *testing.T, receivers []config.Receiver, routes []config.Route, opts managerOptions) (*Manager, *prometheus.Registry) {
	t.Helper()
	if opts.retrier.Base == 0 && opts.retrier.Sleep == nil && opts.retrier.Rand == nil {
		opts.retrier = fastRetrier
	}
	if opts.httpClient == nil {
		opts.httpClient = func(config.Receiver) (*http.Client, error) { return &http.Client{}, nil }
	}
	reg := prometheus.NewRegistry()
	m, err := newManager(testGlobal(), receivers, routes, testLogger(t), reg, opts)
	if err != nil {
		t.Fatalf("newManager: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = m.Stop(ctx)
	})
	return m, reg
}

// stop stops m, failing the test if pending notifications are not delivered within 5s.
func stop(t *testing.T, m *Manager) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := m.Stop(ctx); err != nil {
		t.Fatalf("Stop: %v", err)
	}
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(string(p))
	return len(p), nil
}

// waitFor polls cond until it holds, failing the test after a deadline.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// routeAll routes every alert to the named receivers.
func routeAll(names ...string) []config.Route {
	var routes []config.Route
	for _, n := range names {
		routes = append(routes, config.Route{Receiver: n})
	}
	return routes
}

// recorder is an HTTP endpoint that records request bodies and answers with respond (200
// when nil).
type recorder struct {
	mu      sync.Mutex
	bodies  [][]byte
	paths   []string
	respond func(n int, w http.ResponseWriter, r *http.Request) bool // n counts requests from 1; false: not accepted
	accept  []bool
}

func newRecorder(t *testing.T, respond func(n int, w http.ResponseWriter, r *http.Request) bool) (*recorder, *httptest.Server) {
	rec := &recorder{respond: respond}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rec.mu.Lock()
		rec.bodies = append(rec.bodies, body)
		rec.paths = append(rec.paths, r.URL.Path)
		n := len(rec.bodies)
		rec.mu.Unlock()
		ok := true
		if rec.respond != nil {
			ok = rec.respond(n, w, r)
		}
		rec.mu.Lock()
		rec.accept = append(rec.accept, ok)
		rec.mu.Unlock()
	}))
	t.Cleanup(srv.Close)
	return rec, srv
}

// accepted returns the bodies of the requests that were answered with success.
func (r *recorder) accepted() [][]byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out [][]byte
	for i, ok := range r.accept {
		if ok {
			out = append(out, r.bodies[i])
		}
	}
	return out
}

func (r *recorder) requests() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.bodies)
}

func mustUnmarshal(t *testing.T, data []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatalf("decode %s: %v", data, err)
	}
}

// slackBotServer is slacktest's fake Slack API, started for the test, answering chat.update
// as Slack does (slacktest has no handler for it).
func slackBotServer(t *testing.T) *slacktest.Server {
	t.Helper()
	srv := slacktest.NewTestServer(func(c slacktest.Customize) {
		c.Handle("/chat.update", func(w http.ResponseWriter, r *http.Request) {
			_ = r.ParseForm()
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"ok":true,"channel":%q,"ts":%q}`, r.PostForm.Get("channel"), r.PostForm.Get("ts"))
		})
	})
	srv.Start()
	t.Cleanup(srv.Stop)
	return srv
}
