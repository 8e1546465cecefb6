package alerts

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	commoncfg "github.com/prometheus/common/config"
	"github.com/prometheus/common/model"

	"github.com/emergent-sh/emergent/config"
)

// An alert goes to every receiver with a matching route, once per receiver.
func TestManagerRouting(t *testing.T) {
	hookA, srvA := newRecorder(t, nil)
	hookB, srvB := newRecorder(t, nil)
	am, srvAM := newRecorder(t, nil)
	m, _ := startManager(t, []config.Receiver{
		{Name: "all", Type: config.ReceiverWebhook, URL: commoncfg.Secret(srvA.URL)},
		{Name: "storms", Type: config.ReceiverWebhook, URL: commoncfg.Secret(srvB.URL)},
		{Name: "am", Type: config.ReceiverAlertmanager, URLs: []string{srvAM.URL}},
	}, []config.Route{
		{Receiver: "all"},
		{Receiver: "all", Kinds: []string{"self_generated_traffic"}}, // matches too: still once
		{Receiver: "storms", Kinds: []string{"flush_storm"}},
		{Receiver: "am", Severities: []string{"critical"}, Match: map[string]string{"service": "billing"}},
	}, managerOptions{})

	m.Update(t0, []*Alert{testAlert("checkout", t0, time.Time{}), testAlert("billing", t0, time.Time{})})
	stop(t, m)

	services := func(rec *recorder, alertmanager bool) []string {
		var out []string
		for _, b := range rec.accepted() {
			if alertmanager {
				var alerts []postableAlert
				mustUnmarshal(t, b, &alerts)
				for _, a := range alerts {
					out = append(out, a.Labels["service"])
				}
				continue
			}
			var msg webhookMessage
			mustUnmarshal(t, b, &msg)
			for _, a := range msg.Alerts {
				out = append(out, a.Labels["service"])
			}
		}
		sort.Strings(out)
		return out
	}
	tests := []struct {
		receiver string
		got      []string
		want     []string
	}{
		{"all", services(hookA, false), []string{"billing", "checkout"}},
		{"storms", services(hookB, false), nil},
		{"am", services(am, true), []string{"billing"}},
	}
	for _, tc := range tests {
		if !slices.Equal(tc.got, tc.want) {
			t.Errorf("receiver %s got alerts for %v, want %v", tc.receiver, tc.got, tc.want)
		}
	}
}

// hangingServer is a receiver that holds every request until released (or the client gives
// up). It reports each request it starts holding on started.
func hangingServer(t *testing.T) (rec *recorder, url string, started chan struct{}, release func()) {
	gate := make(chan struct{})
	started = make(chan struct{}, 100)
	rec, srv := newRecorder(t, func(_ int, w http.ResponseWriter, r *http.Request) bool {
		started <- struct{}{}
		select {
		case <-gate:
			return true
		case <-r.Context().Done():
			return false
		}
	})
	var once sync.Once
	release = func() { once.Do(func() { close(gate) }) }
	// Registered after the server's own cleanup, so it runs first and the server can close.
	t.Cleanup(release)
	return rec, srv.URL, started, release
}

func waitStarted(t *testing.T, started chan struct{}) {
	t.Helper()
	select {
	case <-started:
	case <-time.After(5 * time.Second):
		t.Fatal("timed out waiting for the hanging receiver to get a request")
	}
}

// A receiver that hangs delays neither Update nor the delivery to another receiver.
func TestManagerHangingReceiver(t *testing.T) {
	hang, hangURL, started, release := hangingServer(t)
	fast, fastSrv := newRecorder(t, nil)
	m, reg := startManager(t, []config.Receiver{
		{Name: "hang", Type: config.ReceiverWebhook, URL: commoncfg.Secret(hangURL), Timeout: model.Duration(time.Hour)},
		{Name: "fast", Type: config.ReceiverWebhook, URL: commoncfg.Secret(fastSrv.URL)},
	}, routeAll("hang", "fast"), managerOptions{})
	defer release()

	update := func(now time.Time, alerts ...*Alert) {
		t.Helper()
		done := make(chan struct{})
		go func() {
			m.Update(now, alerts)
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("Update blocked on a hanging receiver")
		}
	}
	update(t0, testAlert("checkout", t0, time.Time{}))
	waitStarted(t, started)
	waitFor(t, "the other receiver to get the first alert", func() bool { return len(fast.accepted()) == 1 })
	update(t0.Add(30*time.Second), testAlert("checkout", t0, time.Time{}), testAlert("billing", t0, time.Time{}))
	waitFor(t, "the other receiver to get the second alert", func() bool { return len(fast.accepted()) == 2 })
	if n := len(hang.accepted()); n != 0 {
		t.Fatalf("hanging receiver answered %d requests", n)
	}

	release()
	stop(t, m)
	if n := len(hang.accepted()); n != 2 {
		t.Errorf("hanging receiver got %d alerts once released, want 2", n)
	}
	if got := testutil.ToFloat64(m.metrics.notifications.WithLabelValues("fast", outcomeSuccess)); got != 2 {
		t.Errorf("notifications_total{receiver=fast,outcome=success} = %v, want 2", got)
	}
	if n, err := testutil.GatherAndCount(reg, "emergent_notification_latency_seconds"); err != nil || n != 2 {
		t.Errorf("latency histograms = %d (%v), want one per receiver", n, err)
	}
}

// A full queue drops the oldest page; Stop gives up when its context ends and drops what
// is left.
func TestManagerQueueFullAndStop(t *testing.T) {
	hang, hangURL, started, release := hangingServer(t)
	m, _ := startManager(t, []config.Receiver{
		{Name: "hang", Type: config.ReceiverWebhook, URL: commoncfg.Secret(hangURL), QueueSize: 1, Timeout: model.Duration(time.Hour)},
	}, routeAll("hang"), managerOptions{})
	defer release()

	m.Update(t0, []*Alert{testAlert("a", t0, time.Time{})})
	waitStarted(t, started) // a is in flight; the queue is empty
	m.Update(t0, []*Alert{testAlert("a", t0, time.Time{}), testAlert("b", t0, time.Time{}), testAlert("c", t0, time.Time{})})
	dropped := func() float64 { return testutil.ToFloat64(m.metrics.dropped.WithLabelValues("hang")) }
	if got := dropped(); got != 1 {
		t.Fatalf("dropped_total = %v, want 1 (b, for c)", got)
	}
	queueLength := func() float64 { return testutil.ToFloat64(m.metrics.queueLength.WithLabelValues("hang")) }
	if got := queueLength(); got != 2 {
		t.Errorf("queue_length = %v, want 2 (a in flight, c pending)", got)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := m.Stop(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Stop = %v, want it to give up at its deadline", err)
	}
	if got := dropped(); got != 2 {
		t.Errorf("dropped_total = %v after Stop, want 2 (c left at shutdown)", got)
	}
	if got := testutil.ToFloat64(m.metrics.notifications.WithLabelValues("hang", outcomeFailure)); got != 1 {
		t.Errorf("failures = %v, want 1 (a, abandoned in flight)", got)
	}
	if got := queueLength(); got != 0 {
		t.Errorf("queue_length = %v after Stop, want 0", got)
	}
	if n := len(hang.accepted()); n != 0 {
		t.Errorf("hanging receiver answered %d requests", n)
	}
	m.Update(t0, []*Alert{testAlert("d", t0, time.Time{})}) // ignored, must not panic
}

func TestNewManagerErrors(t *testing.T) {
	webhook := config.Receiver{Name: "hook", Type: config.ReceiverWebhook, URL: "http://hook"}
	tests := []struct {
		name      string
		receivers []config.Receiver
		routes    []config.Route
		want      string
	}{
		{"unknown receiver in route", []config.Receiver{webhook}, routeAll("nope"), `route 1: unknown receiver "nope"`},
		{"receiver defined twice", []config.Receiver{webhook, webhook}, nil, `receiver "hook": defined twice`},
		{"unknown type", []config.Receiver{{Name: "x", Type: "pager"}}, nil, `unknown receiver type "pager"`},
		{"bad Alertmanager URL", []config.Receiver{{Name: "am", Type: config.ReceiverAlertmanager, URLs: []string{"am:9093"}}}, nil, "want an absolute http(s) URL"},
		{"slack without a channel", []config.Receiver{{Name: "s", Type: config.ReceiverSlack, Token: "xoxb"}}, nil, "token mode needs a channel"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewManager(testGlobal(), tc.receivers, tc.routes, nil, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("NewManager error = %v, want %q", err, tc.want)
			}
		})
	}
}

// A configuration reload builds a second Manager on the same registry.
func TestNewManagerTwiceOnOneRegistry(t *testing.T) {
	reg := prometheus.NewRegistry()
	for range 2 {
		m, err := NewManager(config.Global{}, []config.Receiver{{Name: "hook", Type: config.ReceiverWebhook, URL: "http://hook"}}, routeAll("hook"), nil, reg)
		if err != nil {
			t.Fatal(err)
		}
		stop(t, m)
	}
}

// Stop with a receiver that is down, its delivery waiting out a long backoff, returns once its
// context is cancelled: the attempt in flight is given up, what is queued behind it is dropped
// and nothing is attempted again.
func TestManagerStopReceiverDown(t *testing.T) {
	rec, srv := newRecorder(t, func(_ int, w http.ResponseWriter, _ *http.Request) bool {
		w.WriteHeader(http.StatusServiceUnavailable)
		return false
	})
	m, _ := startManager(t, []config.Receiver{{Name: "am", Type: config.ReceiverAlertmanager, URLs: []string{srv.URL}}},
		routeAll("am"), managerOptions{retrier: Retrier{Base: time.Hour, Max: time.Hour, Rand: func() float64 { return 1 }}})
	value := func(c *prometheus.CounterVec, labels ...string) float64 {
		return testutil.ToFloat64(c.WithLabelValues(append([]string{"am"}, labels...)...))
	}

	alerts := []*Alert{testAlert("checkout", t0, time.Time{}), testAlert("billing", t0, time.Time{})}
	m.Update(t0, alerts)
	waitFor(t, "the first attempt to fail", func() bool { return value(m.metrics.requestsFailed) == 1 })
	m.Update(t0.Add(time.Minute), alerts) // resends, queued behind the batch waiting for its retry

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	stopped := make(chan error, 1)
	go func() { stopped <- m.Stop(ctx) }()
	select {
	case err := <-stopped:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Stop = %v, want it to give up with its context", err)
		}
	case <-time.After(time.Minute): // a hang guard, not a speed check: the retry waits an hour
		t.Fatal("Stop did not return after its context was cancelled")
	}

	if n := rec.requests(); n != 1 {
		t.Errorf("receiver got %d requests, want 1 (no attempt after Stop gave up)", n)
	}
	if got := value(m.metrics.notifications, outcomeFailure); got != 1 {
		t.Errorf("failures = %v, want 1 (the batch being retried)", got)
	}
	if got := value(m.metrics.dropped); got != 2 {
		t.Errorf("dropped_total = %v, want 2 (the resends queued behind it)", got)
	}
	if got := testutil.ToFloat64(m.metrics.queueLength.WithLabelValues("am")); got != 0 {
		t.Errorf("queue_length = %v after Stop, want 0", got)
	}
}
