package alerts

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Outcomes of notifications_total.
const (
	outcomeSuccess = "success" // delivered
	outcomeFailure = "failure" // given up: not retryable, or shutting down
	outcomeRetry   = "retry"   // an attempt failed and will be retried
	outcomeDropped = "dropped" // dropped from a full queue, or left at shutdown
)

type metrics struct {
	notifications  *prometheus.CounterVec
	requests       *prometheus.CounterVec
	requestsFailed *prometheus.CounterVec
	latency        *prometheus.HistogramVec
	queueLength    *prometheus.GaugeVec
	dropped        *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		notifications: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "emergent_notifications_total",
			Help: "Notifications by receiver and outcome: success and failure count deliveries that posted something or gave up (one Alertmanager delivery carries a batch; a receiver that is down is retried without giving up), retry counts failed attempts that are retried, dropped counts alerts dropped before delivery.",
		}, []string{"receiver", "outcome"}),
		// Alertmanager's notification_requests_total and notification_requests_failed_total:
		// counted per attempt, they show a receiver that is down at its first failed attempt,
		// while its deliveries are still being retried.
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "emergent_notification_requests_total",
			Help: "Delivery attempts by receiver, retries included.",
		}, []string{"receiver"}),
		requestsFailed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "emergent_notification_requests_failed_total",
			Help: "Failed delivery attempts by receiver, whether retried or not.",
		}, []string{"receiver"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "emergent_notification_latency_seconds",
			Help:    "Duration of notification attempts by receiver.",
			Buckets: prometheus.DefBuckets,
		}, []string{"receiver"}),
		queueLength: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "emergent_notification_queue_length",
			Help: "Alerts waiting for delivery by receiver, those in a delivery attempt or being retried included (summed over an Alertmanager receiver's URLs).",
		}, []string{"receiver"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "emergent_notifications_dropped_total",
			Help: "Alerts dropped before delivery by receiver, because its queue was full or at shutdown.",
		}, []string{"receiver"}),
	}
	if reg == nil {
		return m, nil
	}
	var err error
	if m.notifications, err = register(reg, m.notifications); err != nil {
		return nil, err
	}
	if m.requests, err = register(reg, m.requests); err != nil {
		return nil, err
	}
	if m.requestsFailed, err = register(reg, m.requestsFailed); err != nil {
		return nil, err
	}
	if m.latency, err = register(reg, m.latency); err != nil {
		return nil, err
	}
	if m.queueLength, err = register(reg, m.queueLength); err != nil {
		return nil, err
	}
	if m.dropped, err = register(reg, m.dropped); err != nil {
		return nil, err
	}
	return m, nil
}

// register registers c, or returns the collector already registered under its name: a
// configuration reload builds a new Manager on the same registry.
func register[T prometheus.Collector](reg prometheus.Registerer, c T) (T, error) {
	err := reg.Register(c)
	if err == nil {
		return c, nil
	}
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(T); ok {
			return existing, nil
		}
	}
	return c, fmt.Errorf("register metrics: %w", err)
}

// initReceiver creates a receiver's series at zero, so that rate() and absent() work before
// the first notification.
func (m *metrics) initReceiver(name string) {
	for _, o := range []string{outcomeSuccess, outcomeFailure, outcomeRetry, outcomeDropped} {
		m.notifications.WithLabelValues(name, o)
	}
	m.requests.WithLabelValues(name)
	m.requestsFailed.WithLabelValues(name)
	m.latency.WithLabelValues(name)
	m.queueLength.WithLabelValues(name)
	m.dropped.WithLabelValues(name)
}
