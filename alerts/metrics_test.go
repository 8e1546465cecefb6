package alerts

import (
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	commoncfg "github.com/prometheus/common/config"

	"github.com/emergent-sh/emergent/config"
)

// While a receiver is down, its metrics show it: the queue length counts the alerts being
// retried as well as those queued behind them, and every failed attempt counts at once,
// though no delivery gives up. When the receiver is back, the queue empties.
func TestMetricsShowReceiverDown(t *testing.T) {
	for _, typ := range []string{config.ReceiverAlertmanager, config.ReceiverWebhook} {
		t.Run(typ, func(t *testing.T) {
			back := make(chan struct{})
			rec, srv := newRecorder(t, func(_ int, w http.ResponseWriter, _ *http.Request) bool {
				select {
				case <-back:
					return true
				default:
					w.WriteHeader(http.StatusServiceUnavailable)
					return false
				}
			})
			rc := config.Receiver{Name: "down", Type: typ, URLs: []string{srv.URL}}
			if typ == config.ReceiverWebhook {
				rc.URLs, rc.URL = nil, commoncfg.Secret(srv.URL)
			}
			m, _ := startManager(t, []config.Receiver{rc}, routeAll("down"), managerOptions{})
			value := func(outcome string) float64 {
				return testutil.ToFloat64(m.metrics.notifications.WithLabelValues("down", outcome))
			}
			queueLength := func() float64 { return testutil.ToFloat64(m.metrics.queueLength.WithLabelValues("down")) }
			failedRequests := func() float64 { return testutil.ToFloat64(m.metrics.requestsFailed.WithLabelValues("down")) }

			var alerts []*Alert
			for _, svc := range []string{"a", "b", "c", "d", "e"} {
				alerts = append(alerts, testAlert(svc, t0, time.Time{}))
			}
			m.Update(t0, alerts)
			waitFor(t, "failed attempts", func() bool { return failedRequests() >= 3 })
			if got := queueLength(); got != 5 {
				t.Errorf("queue_length = %v while the receiver is down, want 5", got)
			}
			// Alertmanager's resends fold into the batch being retried: still 5 waiting, not 10.
			m.Update(t0.Add(time.Minute), alerts)
			waitFor(t, "the resends to fold into the retried batch", func() bool { return queueLength() == 5 })
			if s, f := value(outcomeSuccess), value(outcomeFailure); s != 0 || f != 0 {
				t.Errorf("success %v, failure %v while the receiver is down; want 0, 0 (retrying)", s, f)
			}
			if r, failed := value(outcomeRetry), failedRequests(); r == 0 || failed < r {
				t.Errorf("retry %v, requests_failed_total %v; want failed attempts counted in both", r, failed)
			}

			close(back)
			waitFor(t, "the queue to empty once the receiver is back", func() bool { return queueLength() == 0 })
			stop(t, m)
			if len(rec.accepted()) == 0 || value(outcomeSuccess) == 0 {
				t.Errorf("%d posts accepted, success %v; want the alerts delivered once the receiver is back", len(rec.accepted()), value(outcomeSuccess))
			}
			if got, want := testutil.ToFloat64(m.metrics.requests.WithLabelValues("down")), failedRequests()+value(outcomeSuccess); got != want {
				t.Errorf("requests_total = %v, want %v (every failed attempt and every delivery)", got, want)
			}
		})
	}
}

// A delivery that posts nothing (the resolve of an episode whose firing post was refused) is
// neither attempted nor counted as a success.
func TestSuccessCountsOnlyPosts(t *testing.T) {
	for _, typ := range []string{config.ReceiverWebhook, config.ReceiverSlack} {
		t.Run(typ, func(t *testing.T) {
			rec, srv := newRecorder(t, func(n int, w http.ResponseWriter, _ *http.Request) bool {
				if n == 1 {
					w.WriteHeader(http.StatusBadRequest) // the firing post: refused, not retried
					return false
				}
				return true
			})
			rc := config.Receiver{Name: "r", Type: typ, URL: commoncfg.Secret(srv.URL)}
			if typ == config.ReceiverSlack {
				rc.URL, rc.WebhookURL = "", commoncfg.Secret(srv.URL)
			}
			m, _ := startManager(t, []config.Receiver{rc}, routeAll("r"), managerOptions{})
			m.Update(t0, []*Alert{testAlert("checkout", t0, time.Time{})})
			m.Update(t0.Add(time.Minute), []*Alert{testAlert("checkout", t0, t0.Add(time.Minute))})
			stop(t, m)

			value := func(outcome string) float64 {
				return testutil.ToFloat64(m.metrics.notifications.WithLabelValues("r", outcome))
			}
			if s, f := value(outcomeSuccess), value(outcomeFailure); s != 0 || f != 1 {
				t.Errorf("success %v, failure %v; want 0, 1 (the refused firing post; the resolve posts nothing)", s, f)
			}
			if n, got := rec.requests(), testutil.ToFloat64(m.metrics.requests.WithLabelValues("r")); n != 1 || got != 1 {
				t.Errorf("%d requests, requests_total %v; want 1 (the firing post)", n, got)
			}
		})
	}
}
