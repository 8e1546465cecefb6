package alerts

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	commoncfg "github.com/prometheus/common/config"

	"github.com/emergent-sh/emergent/config"
)

// Defaults for settings left zero (a Manager built without config.Load, as tests do): the
// configuration's own, from their one home.
const (
	defaultEvaluationInterval = time.Duration(config.DefaultEvaluationInterval)
	defaultResendDelay        = time.Duration(config.DefaultResendDelay)
	defaultReceiverTimeout    = time.Duration(config.DefaultReceiverTimeout)
	defaultQueueSize          = config.DefaultQueueSize
)

// Manager routes alerts to receivers and delivers them in the background. Each receiver (and
// each URL of an Alertmanager receiver) has its own bounded queue and goroutine, so a slow or
// down receiver delays nobody else, and Update never waits for delivery.
type Manager struct {
	logger         *slog.Logger
	receivers      []*receiver
	externalLabels map[string]string
	retrier        Retrier
	metrics        *metrics
	delivered      deliveredLog

	mu      sync.Mutex // guards the receivers' bookkeeping and stopped
	stopped bool

	ctx    context.Context // deliveries' context, cancelled when Stop stops waiting
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// receiver is one configured receiver: which alerts it takes, what it was last sent, and
// where its notifications queue.
type receiver struct {
	name       string
	routes     []config.Route
	deliveries []*delivery // one per Alertmanager URL, else one
	// itemize decides what of the routed alerts is due to the receiver now: its one dedup
	// stage (Alertmanager: new, changed or due for a resend; others: each transition once).
	itemize func(now time.Time, routed []*Alert) []*item

	// Alertmanager: alerts are re-sent until they time out there, as Prometheus does.
	resendDelay time.Duration
	validFor    time.Duration
	sent        map[string]sentState // by fingerprint

	// Slack and webhook: one message per transition.
	queued map[string]transition // by episode key: the latest transition queued
}

type sentState struct {
	resolved bool
	revision int
	at       time.Time
}

// transition is where an episode stands for receivers that post once per change.
type transition struct {
	resolved bool
	revision int
}

// delivery is one queue and the goroutine that empties it into a notifier.
type delivery struct {
	receiver string
	notifier Notifier
	queue    *queue
	timeout  time.Duration
	// coalesce sends everything pending in one request and folds fresher queued state into a
	// batch that is being retried (Alertmanager); otherwise items go one by one, in order.
	coalesce bool
	// due reports whether the notifier still has to post an alert's transition (Slack and
	// webhook, from their episode logs); nil means everything handed over is due.
	due    func(*Alert) bool
	logger *slog.Logger
}

// managerOptions are seams for tests.
type managerOptions struct {
	retrier    Retrier
	httpClient func(config.Receiver) (*http.Client, error)
}

// NewManager builds a notifier per receiver and starts their delivery goroutines. Alerts go
// to every receiver whose route matches them (once per receiver). Stop the Manager to
// deliver what is pending and release the goroutines.
func NewManager(g config.Global, receivers []config.Receiver, routes []config.Route, logger *slog.Logger, reg prometheus.Registerer) (*Manager, error) {
	return newManager(g, receivers, routes, logger, reg, managerOptions{})
}

func newManager(g config.Global, receivers []config.Receiver, routes []config.Route, logger *slog.Logger, reg prometheus.Registerer, opts managerOptions) (*Manager, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if opts.httpClient == nil {
		opts.httpClient = func(r config.Receiver) (*http.Client, error) {
			return commoncfg.NewClientFromConfig(r.HTTPClient, "emergent-"+r.Name)
		}
	}
	met, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	resend := orDefault(time.Duration(g.ResendDelay), defaultResendDelay)
	m := &Manager{
		logger:         logger,
		externalLabels: g.ExternalLabels,
		retrier:        opts.retrier,
		metrics:        met,
	}

	byName := map[string]*receiver{}
	for _, rc := range receivers {
		if _, dup := byName[rc.Name]; dup {
			return nil, fmt.Errorf("receiver %q: defined twice", rc.Name)
		}
		r := &receiver{
			name:        rc.Name,
			resendDelay: resend,
			// A firing alert is sent valid for four evaluation or resend intervals, so that
			// it survives two failed evaluations or sends without Alertmanager resolving it
			// on its own (Prometheus's rule: "allow for two eval or Alertmanager send
			// failures").
			validFor: 4 * max(orDefault(time.Duration(g.EvaluationInterval), defaultEvaluationInterval), resend),
			sent:     map[string]sentState{},
			queued:   map[string]transition{},
		}
		if err := m.addDeliveries(r, rc, opts); err != nil {
			return nil, fmt.Errorf("receiver %q: %w", rc.Name, err)
		}
		met.initReceiver(r.name)
		byName[r.name] = r
		m.receivers = append(m.receivers, r)
	}
	for i, rt := range routes {
		r, ok := byName[rt.Receiver]
		if !ok {
			return nil, fmt.Errorf("route %d: unknown receiver %q", i+1, rt.Receiver)
		}
		r.routes = append(r.routes, rt)
	}

	m.ctx, m.cancel = context.WithCancel(context.Background())
	for _, r := range m.receivers {
		for _, d := range r.deliveries {
			m.wg.Add(1)
			go m.run(d)
		}
	}
	return m, nil
}

// addDeliveries builds r's notifiers and queues.
func (m *Manager) addDeliveries(r *receiver, rc config.Receiver, opts managerOptions) error {
	client, err := opts.httpClient(rc)
	if err != nil {
		return fmt.Errorf("HTTP client: %w", err)
	}
	logger := m.logger.With("receiver", rc.Name)
	newDelivery := func(n Notifier, coalesce bool, due func(*Alert) bool, logger *slog.Logger) *delivery {
		return &delivery{
			receiver: rc.Name,
			notifier: n,
			queue:    newQueue(orDefault(rc.QueueSize, defaultQueueSize), m.metrics.queueLength.WithLabelValues(rc.Name)),
			timeout:  orDefault(time.Duration(rc.Timeout), defaultReceiverTimeout),
			coalesce: coalesce,
			due:      due,
			logger:   logger,
		}
	}
	switch rc.Type {
	case config.ReceiverAlertmanager:
		if len(rc.URLs) == 0 {
			return fmt.Errorf("alertmanager: no URLs")
		}
		// Every Alertmanager gets every alert (they deduplicate among themselves), each
		// through its own queue so that one down instance never delays another.
		for _, u := range rc.URLs {
			am, err := NewAlertmanager(u, client)
			if err != nil {
				return err
			}
			r.deliveries = append(r.deliveries, newDelivery(am, true, nil, logger.With("alertmanager", redactURL(u))))
		}
		r.itemize = r.alertmanagerItems
	case config.ReceiverSlack:
		s, err := NewSlack(rc, client, logger)
		if err != nil {
			return err
		}
		r.deliveries = append(r.deliveries, newDelivery(s, false, s.due, logger))
		r.itemize = func(_ time.Time, routed []*Alert) []*item { return r.transitionItems(routed, s.due) }
	case config.ReceiverWebhook:
		w, err := NewWebhook(rc, client, logger)
		if err != nil {
			return err
		}
		r.deliveries = append(r.deliveries, newDelivery(w, false, w.due, logger))
		r.itemize = func(_ time.Time, routed []*Alert) []*item { return r.transitionItems(routed, w.due) }
	default:
		return fmt.Errorf("unknown receiver type %q", rc.Type)
	}
	return nil
}

// Update hands the Manager the alerts of one evaluation at time now: every firing alert and
// every alert resolved within the resolved retention. It queues what each receiver is due
// and returns without waiting for delivery.
func (m *Manager) Update(now time.Time, alerts []*Alert) {
	prepared := make([]*Alert, 0, len(alerts))
	for _, a := range alerts {
		prepared = append(prepared, m.prepare(a))
	}

	m.mu.Lock()
	defer m.mu.Unlock()
	if m.stopped {
		m.logger.Debug("Alerts manager stopped, ignoring update", "alerts", len(alerts))
		return
	}
	for _, r := range m.receivers {
		var routed []*Alert
		for _, a := range prepared {
			if r.takes(a) {
				routed = append(routed, a)
			}
		}
		items := r.itemize(now, routed)
		if len(items) == 0 {
			continue
		}
		for _, d := range r.deliveries {
			if dropped := d.queue.push(items...); len(dropped) > 0 {
				m.dropped(d, dropped, "queue full")
			}
		}
	}
}

// prepare copies a so that the caller may reuse it, and adds the external labels.
func (m *Manager) prepare(a *Alert) *Alert { return WithExternalLabels(a, m.externalLabels) }

// WithExternalLabels returns a copy of a with the external labels added (alert labels win, as
// in Prometheus): what every receiver gets.
func WithExternalLabels(a *Alert, external map[string]string) *Alert {
	c := *a
	c.Labels = maps.Clone(a.Labels)
	if c.Labels == nil {
		c.Labels = map[string]string{}
	}
	for k, v := range external {
		if _, ok := c.Labels[k]; !ok {
			c.Labels[k] = v
		}
	}
	c.Annotations = maps.Clone(a.Annotations)
	return &c
}

// takes reports whether one of r's routes matches a.
func (r *receiver) takes(a *Alert) bool {
	for _, rt := range r.routes {
		if rt.Matches(a.Labels) {
			return true
		}
	}
	return false
}

// alertmanagerItems returns the alerts due to Alertmanager, Prometheus's way: an alert is
// sent when new, when its state changed, and every resend delay, because Alertmanager
// resolves an alert whose EndsAt passes without news. Firing alerts are sent valid for
// validFor; resolved ones with their end, for as long as they are handed over: the engine
// keeps them for resolved_retention on its step clock, the one home of that rule.
func (r *receiver) alertmanagerItems(now time.Time, alerts []*Alert) []*item {
	// One label set is one Alertmanager alert: if an episode resolved and the next one
	// already fires, the firing one wins.
	latest := map[string]*Alert{}
	for _, a := range alerts {
		fp := a.Fingerprint()
		if cur, ok := latest[fp]; ok && !supersedes(a, cur) {
			continue
		}
		latest[fp] = a
	}

	var items []*item
	sent := make(map[string]sentState, len(latest))
	for _, a := range alerts {
		fp := a.Fingerprint()
		if latest[fp] != a {
			continue
		}
		resolved := a.Resolved()
		prev, seen := r.sent[fp]
		changed := !seen || prev.resolved != resolved || prev.revision != a.Revision
		if !changed && now.Sub(prev.at) < r.resendDelay {
			sent[fp] = prev
			continue
		}
		c := *a
		prio := prioFiringResend
		switch {
		case resolved && seen && !prev.resolved:
			prio = prioResolve
		case resolved:
			// A resend, or the resolve of an alert this Manager never sent firing (it started
			// or was reloaded since): Alertmanager may hold the alert from before, so it is
			// sent, but it must never cost a page.
			prio = prioResolvedResend
		case changed:
			prio = prioFiring
		}
		if !resolved {
			c.EndsAt = now.Add(r.validFor)
		}
		items = append(items, &item{key: fp, alert: &c, resolved: resolved, prio: prio})
		sent[fp] = sentState{resolved: resolved, revision: a.Revision, at: now}
	}
	// Alerts no longer handed to us are forgotten; if one comes back it is new again.
	r.sent = sent
	return items
}

// supersedes reports whether a is a fresher view of its label set than cur.
func supersedes(a, cur *Alert) bool {
	if a.Resolved() != cur.Resolved() {
		return !a.Resolved()
	}
	return a.StartsAt.After(cur.StartsAt)
}

// transitionItems returns the episode transitions not queued yet for a receiver that posts
// one message per transition. Whether a transition is actually posted (never twice, and a
// resolve only after its firing) is the notifier's decision, made at delivery time from its
// episode log, which outlives restarts; this keeps every Update from queueing again, and
// asks due about episodes this Manager has not seen yet, which it is handed after a start or
// a reload: what the receiver already has, or the resolve of an episode it was never paged
// for, must not take a page's place in the queue.
func (r *receiver) transitionItems(alerts []*Alert, due func(*Alert) bool) []*item {
	var items []*item
	queued := make(map[string]transition, len(alerts))
	for _, a := range alerts {
		key, now := a.EpisodeKey(), transition{resolved: a.Resolved(), revision: a.Revision}
		prev, seen := r.queued[key]
		if seen && prev.resolved {
			// Resolved is final for an episode.
			queued[key] = prev
			continue
		}
		queued[key] = now
		if seen && prev == now {
			continue
		}
		if !seen && !due(a) {
			continue // the receiver already has it, or was never paged for the episode
		}
		state, prio := "firing", prioFiring
		switch {
		case now.resolved:
			state, prio = "resolved", prioResolve
		case now.revision > 0:
			state = fmt.Sprintf("update-%d", now.revision)
		}
		items = append(items, &item{key: key + "/" + state, alert: a, resolved: now.resolved, prio: prio})
	}
	r.queued = queued
	return items
}

// run delivers d's queue until the queue is closed and empty, or Stop stops waiting.
func (m *Manager) run(d *delivery) {
	defer m.wg.Done()
	n := 1
	if d.coalesce {
		n = 0 // everything pending, in one request
	}
	for m.ctx.Err() == nil {
		batch, ok := d.queue.take(m.ctx, n)
		if !ok {
			break
		}
		m.deliver(d, batch)
	}
	if left := d.queue.takeAll(); len(left) > 0 {
		d.queue.done(len(left))
		m.dropped(d, left, "shutdown")
	}
}

// deliver sends batch until it is delivered, refused, or Stop stops waiting.
func (m *Manager) deliver(d *delivery, batch []*item) {
	// The batch counts in the queue length until it is delivered or given up: alerts being
	// retried are still waiting.
	defer func() { d.queue.done(len(batch)) }()
	// stillDue keeps what the receiver does not have yet, at every attempt: this is the one
	// place a transition is checked against what was posted (the notifiers post what they are
	// given), so a retry after a partial success posts only the rest.
	stillDue := func() bool {
		if d.due == nil {
			return true
		}
		n := len(batch)
		batch = slices.DeleteFunc(batch, func(it *item) bool { return !d.due(it.alert) })
		d.queue.done(n - len(batch))
		return len(batch) > 0
	}
	if !stillDue() {
		// What the receiver already has, or must not get, is no notification: it is neither
		// attempted nor counted as delivered.
		d.logger.Debug("Nothing to post: the receiver already has it, or was never told it fired")
		return
	}
	attempts := 0
	err := m.retrier.Do(m.ctx, func(ctx context.Context) (bool, error) {
		if d.coalesce && attempts > 0 {
			newer := d.queue.takeAll()
			merged := mergeItems(batch, newer)
			d.queue.done(len(batch) + len(newer) - len(merged)) // superseded by fresher state
			batch = merged
		}
		if attempts > 0 && !stillDue() {
			return false, nil
		}
		attempts++
		ctx, cancel := context.WithTimeout(ctx, d.timeout)
		defer cancel()
		start := time.Now()
		retry, err := d.notifier.Notify(ctx, alertsOf(batch)...)
		m.metrics.latency.WithLabelValues(d.receiver).Observe(time.Since(start).Seconds())
		m.metrics.requests.WithLabelValues(d.receiver).Inc()
		if err != nil {
			m.metrics.requestsFailed.WithLabelValues(d.receiver).Inc()
		}
		if err != nil && retry {
			m.metrics.notifications.WithLabelValues(d.receiver, outcomeRetry).Inc()
			d.logger.Warn("Notification failed, retrying", "alerts", len(batch), "attempt", attempts, "err", err)
		}
		return retry, err
	})
	if err != nil {
		m.metrics.notifications.WithLabelValues(d.receiver, outcomeFailure).Inc()
		d.logger.Error("Notification failed, giving up", "alerts", len(batch), "attempts", attempts, "err", err)
		return
	}
	m.metrics.notifications.WithLabelValues(d.receiver, outcomeSuccess).Inc()
	d.logger.Debug("Notification delivered", "alerts", len(batch), "attempts", attempts)
	now := time.Now()
	for _, it := range batch {
		m.delivered.add(d.receiver, it, now)
	}
}

func (m *Manager) dropped(d *delivery, items []*item, why string) {
	m.metrics.notifications.WithLabelValues(d.receiver, outcomeDropped).Add(float64(len(items)))
	m.metrics.dropped.WithLabelValues(d.receiver).Add(float64(len(items)))
	names := make([]string, 0, len(items))
	for _, it := range items {
		names = append(names, it.alert.Labels["alertname"]+"{"+groupLabels(it.alert.Labels)+"}")
	}
	d.logger.Warn("Dropped notifications", "reason", why, "count", len(items), "alerts", names)
}

// Stop stops accepting alerts and delivers what is pending until ctx is done; then it
// abandons the rest and returns ctx's error. It is safe to call more than once.
func (m *Manager) Stop(ctx context.Context) error {
	m.mu.Lock()
	first := !m.stopped
	m.stopped = true
	m.mu.Unlock()
	if first {
		for _, r := range m.receivers {
			for _, d := range r.deliveries {
				d.queue.close()
			}
		}
	}
	done := make(chan struct{})
	go func() {
		m.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		m.cancel()
		return nil
	case <-ctx.Done():
		m.cancel() // aborts attempts and retries in flight
		<-done
		return fmt.Errorf("stop alerts manager: undelivered notifications dropped: %w", ctx.Err())
	}
}

func alertsOf(items []*item) []*Alert {
	out := make([]*Alert, len(items))
	for i, it := range items {
		out[i] = it.alert
	}
	return out
}

func orDefault[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}
