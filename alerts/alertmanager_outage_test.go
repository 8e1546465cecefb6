package alerts

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/model"

	"github.com/emergent-sh/emergent/config"
	"github.com/emergent-sh/emergent/internal/stack"
)

// acceptedPosts is a reverse proxy in front of a real Alertmanager that keeps every alert batch
// Alertmanager accepted (2xx), so a test can tell what was delivered from what was tried.
type acceptedPosts struct {
	proxy *httputil.ReverseProxy
	mu    sync.Mutex
	posts [][]postableAlert
}

func (a *acceptedPosts) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	r.Body = io.NopCloser(bytes.NewReader(body))
	rec := httptest.NewRecorder()
	a.proxy.ServeHTTP(rec, r)
	if r.Method == http.MethodPost && rec.Code/100 == 2 {
		var batch []postableAlert
		if json.Unmarshal(body, &batch) == nil {
			a.mu.Lock()
			a.posts = append(a.posts, batch)
			a.mu.Unlock()
		}
	}
	for k, vs := range rec.Header() {
		w.Header()[k] = vs
	}
	w.WriteHeader(rec.Code)
	w.Write(rec.Body.Bytes())
}

// delivered returns every accepted alert for service, in the order Alertmanager accepted them.
func (a *acceptedPosts) delivered(service string) []postableAlert {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []postableAlert
	for _, batch := range a.posts {
		for _, al := range batch {
			if al.Labels["service"] == service {
				out = append(out, al)
			}
		}
	}
	return out
}

// listedAlert is an alert as Alertmanager lists it (GET /api/v2/alerts: active ones only).
type listedAlert struct {
	Labels   map[string]string `json:"labels"`
	StartsAt time.Time         `json:"startsAt"`
}

func listAlerts(base string) ([]listedAlert, error) {
	resp, err := http.Get(base + "/api/v2/alerts")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /api/v2/alerts: %s", resp.Status)
	}
	var out []listedAlert
	return out, json.NewDecoder(resp.Body).Decode(&out)
}

// TestAlertmanagerOutage stops a real Alertmanager (by its PID) while alerts fire, goes on
// evaluating as the engine does (Update every interval) through the outage, during which one
// alert resolves and another starts, then starts Alertmanager again on the same address, empty,
// as a restarted Alertmanager without a cluster peer is. After it is back, Alertmanager holds
// each firing alert once with its original startsAt, the resolved one is delivered resolved
// with its resolve time, nothing is dropped, and no resolve was ever sent for the alerts that
// kept firing.
func TestAlertmanagerOutage(t *testing.T) {
	const (
		interval = time.Second
		outage   = 20 * time.Second // "minutes" in production; what matters is many failed resends
	)
	ctx := context.Background()
	dir := t.TempDir()
	am, err := stack.StartAlertmanager(ctx, stack.AlertmanagerOptions{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { am.Stop() }()
	target, _ := url.Parse(am.URL)
	posts := &acceptedPosts{proxy: httputil.NewSingleHostReverseProxy(target)}
	posts.proxy.ErrorLog = log.New(io.Discard, "", 0) // refused while down: expected, and the manager logs it
	front := httptest.NewServer(posts)
	defer front.Close()

	g := config.Global{
		EvaluationInterval: model.Duration(interval),
		ResendDelay:        model.Duration(interval),
		ResolvedRetention:  model.Duration(time.Minute),
	}
	reg := prometheus.NewRegistry()
	m, err := newManager(g, []config.Receiver{{Name: "am", Type: config.ReceiverAlertmanager, URLs: []string{front.URL}}},
		[]config.Route{{Receiver: "am"}}, testLogger(t), reg,
		managerOptions{retrier: Retrier{Base: 100 * time.Millisecond, Max: time.Second},
			httpClient: func(config.Receiver) (*http.Client, error) { return &http.Client{}, nil }})
	if err != nil {
		t.Fatal(err)
	}
	defer stop(t, m)

	began := time.Now().Truncate(time.Second)
	steady := testAlert("steady", began, time.Time{}) // fires throughout
	fixed := testAlert("fixed", began, time.Time{})   // resolves during the outage
	var fresh *Alert                                  // starts during the outage
	evaluate := func() {
		batch := []*Alert{steady, fixed}
		if fresh != nil {
			batch = append(batch, fresh)
		}
		m.Update(time.Now(), batch)
	}
	// keepEvaluating calls evaluate every interval until cond holds or timeout passes.
	keepEvaluating := func(what string, timeout time.Duration, cond func() error) {
		t.Helper()
		deadline := time.Now().Add(timeout)
		for {
			evaluate()
			err := cond()
			if err == nil {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("after %s, %s: %v\nAlertmanager log:\n%s", timeout, what, err, am.Log())
			}
			time.Sleep(interval)
		}
	}
	holds := func(want map[string]time.Time) func() error {
		return func() error {
			listed, err := listAlerts(am.URL)
			if err != nil {
				return err
			}
			got := map[string][]time.Time{}
			for _, a := range listed {
				got[a.Labels["service"]] = append(got[a.Labels["service"]], a.StartsAt)
			}
			for svc, start := range want {
				if len(got[svc]) != 1 || !got[svc][0].Equal(start) {
					return fmt.Errorf("%s: Alertmanager lists startsAt %v, want once at %s", svc, got[svc], start.Format(time.RFC3339))
				}
			}
			if len(got) != len(want) {
				return fmt.Errorf("Alertmanager lists %v, want only %d services", got, len(want))
			}
			return nil
		}
	}

	keepEvaluating("both alerts listed before the outage", 30*time.Second,
		holds(map[string]time.Time{"steady": began, "fixed": began}))

	addr := am.Addr
	am.Stop()
	down := time.Now()
	for time.Since(down) < outage {
		if fixed.EndsAt.IsZero() && time.Since(down) >= outage/4 {
			resolvedAt := time.Now().Truncate(time.Second)
			fixed = testAlert("fixed", began, resolvedAt)
		}
		if fresh == nil && time.Since(down) >= outage/2 {
			fresh = testAlert("fresh", time.Now().Truncate(time.Second), time.Time{})
		}
		evaluate()
		time.Sleep(interval)
	}
	failed := testutil.ToFloat64(m.metrics.notifications.WithLabelValues("am", outcomeRetry))
	if failed == 0 {
		t.Fatalf("no failed attempt during a %s outage: Alertmanager was not down", outage)
	}
	if am, err = stack.StartAlertmanager(ctx, stack.AlertmanagerOptions{Dir: dir, Addr: addr}); err != nil {
		t.Fatal(err)
	}
	back := time.Now()
	keepEvaluating("Alertmanager to hold steady and fresh once, and not fixed", 30*time.Second,
		holds(map[string]time.Time{"steady": began, "fresh": fresh.StartsAt}))
	t.Logf("Alertmanager down %s (%.0f failed attempts, retried); everything listed again %s after it was back",
		back.Sub(down).Round(100*time.Millisecond), failed, time.Since(back).Round(100*time.Millisecond))

	// The resolve was delivered, with the time it resolved, not the time Alertmanager was back.
	var resolvedDelivered bool
	for _, a := range posts.delivered("fixed") {
		if !a.EndsAt.IsZero() && a.EndsAt.Equal(fixed.EndsAt) {
			resolvedDelivered = true
		}
	}
	if !resolvedDelivered {
		t.Errorf("fixed resolved at %s during the outage; no delivered post carries that endsAt", fixed.EndsAt.Format(time.RFC3339))
	}
	// The alerts that kept firing were never told resolved, before, during or after.
	for _, svc := range []string{"steady", "fresh"} {
		for _, a := range posts.delivered(svc) {
			if !a.EndsAt.IsZero() && !a.EndsAt.After(time.Now().Add(-time.Minute)) {
				t.Errorf("%s: delivered with endsAt %s: a firing alert must not resolve", svc, a.EndsAt)
			}
		}
	}
	if v := testutil.ToFloat64(m.metrics.dropped.WithLabelValues("am")); v > 0 {
		t.Errorf("%v alerts dropped during the outage; want none", v)
	}
}
