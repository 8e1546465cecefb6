package sources

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/emergent-sh/emergent/config"
	"github.com/prometheus/client_golang/api"
	v1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/client_golang/prometheus"
	commoncfg "github.com/prometheus/common/config"
	"github.com/prometheus/common/model"
)

// Defaults applied when the configuration leaves a value at zero.
const (
	// DefaultTimeout bounds one query when prometheus.timeout is unset.
	DefaultTimeout = 10 * time.Second
	// DefaultMaxConcurrentQueries bounds the queries in flight when
	// prometheus.max_concurrent_queries is unset. Four keeps a catch-up after an outage from
	// becoming the burst of self-generated traffic this daemon exists to find.
	DefaultMaxConcurrentQueries = 4
	// MaxResponseBytes is the largest (decompressed) response body accepted from Prometheus.
	// A query that matches far more series than intended must fail with an error, not take
	// the daemon down with it. 256 MiB is well above any aggregated per-rule query.
	MaxResponseBytes = 256 << 20
)

// ErrResponseTooLarge is returned (wrapped) when a response body exceeds MaxResponseBytes.
var ErrResponseTooLarge = errors.New("response body too large")

// maxDistinctWarnings bounds the memory used to log each warning once. Warnings that embed
// varying text would otherwise grow the set forever; when it is full it starts over, so a
// warning may be logged again after many others.
const maxDistinctWarnings = 1024

// Prometheus is a Source reading from the Prometheus HTTP API (or a compatible one: Thanos,
// Mimir, VictoriaMetrics). It is safe for concurrent use; every caller shares one bound on the
// number of queries in flight.
type Prometheus struct {
	client     api.Client
	httpClient *http.Client // client's, for the answers decoded as they stream in
	api        v1.API
	logger     *slog.Logger
	timeout    time.Duration
	slots      chan struct{} // one token per query allowed in flight
	secrets    []string      // credentials that must never appear in an error
	metrics    *queryMetrics
	labels     *labelSets // label sets decoded before, shared by the answers that carry them
	recycled   recycledAnswers

	mu     sync.Mutex
	warned map[string]struct{} // warnings already logged
}

// NewPrometheus builds a source for cfg. It sends nothing to Prometheus. The HTTP client comes
// from cfg.HTTPClient (basic auth, bearer, TLS, OAuth2, proxy); metrics are registered on reg,
// which may be nil. A logger of nil discards logs.
func NewPrometheus(cfg config.Prometheus, logger *slog.Logger, reg prometheus.Registerer) (*Prometheus, error) {
	return newPrometheus(cfg, logger, reg, MaxResponseBytes)
}

// newPrometheus is NewPrometheus with a chosen response size limit, so tests need not send
// 256 MiB to prove the limit holds.
func newPrometheus(cfg config.Prometheus, logger *slog.Logger, reg prometheus.Registerer, maxResponseBytes int64) (*Prometheus, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if cfg.URL == "" {
		return nil, errors.New("prometheus URL is empty")
	}
	u, err := url.Parse(cfg.URL)
	if err != nil {
		// url.Parse's message repeats the raw URL, credentials included: keep only the reason.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("invalid prometheus URL: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("invalid prometheus URL %q: want http(s)://host[:port][/path]", redactURL(cfg.URL))
	}

	httpClient, err := commoncfg.NewClientFromConfig(cfg.HTTPClient, "emergent")
	if err != nil {
		return nil, fmt.Errorf("prometheus HTTP client: %w", err)
	}
	httpClient.Transport = &limitTransport{next: httpClient.Transport, max: maxResponseBytes}
	client, err := api.NewClient(api.Config{Address: cfg.URL, Client: httpClient})
	if err != nil {
		return nil, fmt.Errorf("prometheus client: %w", err)
	}

	metrics, err := newQueryMetrics(reg)
	if err != nil {
		return nil, err
	}
	timeout := time.Duration(cfg.Timeout)
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	maxQueries := cfg.MaxConcurrentQueries
	if maxQueries <= 0 {
		maxQueries = DefaultMaxConcurrentQueries
	}
	return &Prometheus{
		client:     client,
		httpClient: httpClient,
		api:        v1.NewAPI(client),
		logger:     logger,
		timeout:    timeout,
		slots:      make(chan struct{}, maxQueries),
		secrets:    secretsOf(u, cfg.HTTPClient),
		metrics:    metrics,
		warned:     map[string]struct{}{},
		labels:     newLabelSets(maxLabelSets),
	}, nil
}

// QueryRange runs a range query. Each query gets at most the configured timeout once it holds
// a slot; waiting for a slot is bounded only by ctx. A result that is not a matrix is an
// error. Warnings are returned and each distinct one is logged once.
func (p *Prometheus) QueryRange(ctx context.Context, query string, r Range) (model.Matrix, Warnings, error) {
	if err := r.validate(); err != nil {
		return nil, nil, fmt.Errorf("query %q: %w", query, err)
	}
	if n := r.steps(); n > MaxPointsPerSeries {
		return nil, nil, fmt.Errorf("query %q: range has %d steps, more than the %d Prometheus accepts", query, n, MaxPointsPerSeries)
	}
	var matrix model.Matrix
	warnings, err := p.run(ctx, query, "/api/v1/query_range", func(ctx context.Context) (model.Value, v1.Warnings, v1.Infos, error) {
		return p.queryRange(ctx, query, r)
	}, func(v model.Value) error {
		m, ok := v.(model.Matrix)
		if !ok {
			return fmt.Errorf("result is a %s, want a matrix", valueType(v))
		}
		matrix = m
		return nil
	})
	if err != nil {
		return nil, warnings, err
	}
	return matrix, warnings, nil
}

// Check runs query once as an instant query at the current time, so `emergentd check --query`
// can prove every configured query parses, is allowed and answers, and say what it returns:
// the series of an instant vector (nil for other result types, which answer too).
func (p *Prometheus) Check(ctx context.Context, query string) (model.Vector, error) {
	var vec model.Vector
	_, err := p.run(ctx, query, "/api/v1/query", func(ctx context.Context) (model.Value, v1.Warnings, v1.Infos, error) {
		return p.api.Query(ctx, query, time.Now(), v1.WithTimeout(p.timeout))
	}, func(v model.Value) error {
		vec, _ = v.(model.Vector)
		return nil
	})
	return vec, err
}

// Ready reports whether Prometheus answers its readiness probe (/-/ready). Servers that
// only speak the query API (404 on /-/ready) are probed with /api/v1/status/buildinfo instead.
// Both are cheap and do not take a query slot.
func (p *Prometheus) Ready(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	u := p.client.URL("/-/ready", nil)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return fmt.Errorf("prometheus readiness: %w", p.redact(err))
	}
	resp, body, err := p.client.Do(ctx, req)
	if err != nil {
		return fmt.Errorf("prometheus readiness: %w", p.redact(err))
	}
	switch {
	case resp.StatusCode/100 == 2:
		return nil
	case resp.StatusCode == http.StatusNotFound:
		if _, err := p.api.Buildinfo(ctx); err != nil {
			return fmt.Errorf("prometheus readiness (buildinfo): %w", p.redact(withDetail(err)))
		}
		return nil
	default:
		return p.redact(fmt.Errorf("prometheus not ready: HTTP %d: %s", resp.StatusCode, snippet(string(body))))
	}
}

// run takes a query slot, runs do under the per-query timeout, records metrics and logs
// warnings. accept inspects the result; its error counts the query as failed.
func (p *Prometheus) run(ctx context.Context, query, endpoint string,
	do func(context.Context) (model.Value, v1.Warnings, v1.Infos, error), accept func(model.Value) error,
) (Warnings, error) {
	select {
	case p.slots <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("query %q: waiting for a query slot: %w", query, context.Cause(ctx))
	}
	defer func() { <-p.slots }()

	qctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	start := time.Now()
	value, warnings, infos, err := do(qctx)
	p.metrics.duration.Observe(time.Since(start).Seconds())

	p.logWarnings(query, warnings)
	if len(infos) > 0 {
		p.logger.Debug("prometheus query info", "query", query, "infos", []string(infos))
	}
	if err == nil && value == nil {
		err = errors.New("empty result")
	}
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			err = fmt.Errorf("timed out after %s: %w", p.timeout, err)
		}
		p.metrics.failed.Inc()
		return Warnings(warnings), fmt.Errorf("query %q: %w", query, p.redact(p.withEndpoint(withDetail(err), endpoint)))
	}
	if err := accept(value); err != nil {
		p.metrics.failed.Inc()
		return Warnings(warnings), fmt.Errorf("query %q: %w", query, err)
	}
	p.metrics.succeeded.Inc()
	p.metrics.samples.Add(float64(countSamples(value)))
	return Warnings(warnings), nil
}

// logWarnings logs each warning the first time it is seen: Prometheus repeats the same
// warning on every evaluation while a store is down, and one line says it.
func (p *Prometheus) logWarnings(query string, warnings v1.Warnings) {
	if len(warnings) == 0 {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, w := range warnings {
		if _, ok := p.warned[w]; ok {
			continue
		}
		if len(p.warned) >= maxDistinctWarnings {
			clear(p.warned)
		}
		p.warned[w] = struct{}{}
		p.logger.Warn("prometheus returned a warning", "query", query, "warning", w)
	}
}

// redact removes credentials from err's message: userinfo from any URL the HTTP client
// reports, and every configured secret wherever it appears (e.g. echoed by a proxy's error
// page). errors.Is and errors.As still see the original chain.
func (p *Prometheus) redact(err error) error {
	if err == nil {
		return nil
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		ue.URL = redactURL(ue.URL)
	}
	msg := err.Error()
	redacted := msg
	for _, s := range p.secrets {
		redacted = strings.ReplaceAll(redacted, s, "<secret>")
	}
	if redacted == msg {
		return err
	}
	return &redactedError{msg: redacted, err: err}
}

// redactedError is err with a message scrubbed of secrets.
type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

// redactURL drops the userinfo of a URL. An unparsable URL is dropped whole, since it cannot
// be known which part is the secret.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "<unparsable URL>"
	}
	if u.User == nil {
		return raw
	}
	u.User = nil
	return u.String()
}

// secretsOf lists the credentials of the Prometheus URL and HTTP client configuration.
func secretsOf(u *url.URL, c commoncfg.HTTPClientConfig) []string {
	var out []string
	add := func(s string) {
		if s != "" {
			out = append(out, s)
		}
	}
	// Usernames are not secrets, and replacing a common word everywhere would garble messages;
	// URLs lose their whole userinfo in redactURL anyway.
	addPassword := func(u *url.URL) {
		if u != nil && u.User != nil {
			pw, _ := u.User.Password()
			add(pw)
		}
	}
	addPassword(u)
	addPassword(c.ProxyURL.URL)
	if c.BasicAuth != nil {
		add(string(c.BasicAuth.Password))
	}
	if c.Authorization != nil {
		add(string(c.Authorization.Credentials))
	}
	if c.OAuth2 != nil {
		add(string(c.OAuth2.ClientSecret))
	}
	add(string(c.BearerToken))
	if c.HTTPHeaders != nil {
		for _, h := range c.HTTPHeaders.Headers {
			for _, s := range h.Secrets {
				add(string(s))
			}
		}
	}
	for _, ss := range c.ProxyConnectHeader {
		for _, s := range ss {
			add(string(s))
		}
	}
	return out
}

// withDetail appends the body of a non-API HTTP error (a proxy's or load balancer's page, or
// Prometheus's plain-text 503) to the message; client_golang keeps it out of Error().
func withDetail(err error) error {
	var apiErr *v1.Error
	if errors.As(err, &apiErr) && apiErr.Detail != "" {
		if d := snippet(apiErr.Detail); d != "" {
			return fmt.Errorf("%w: %s", err, d)
		}
	}
	return err
}

// withEndpoint names the URL that answered when the server answered something other than the
// query API (a 404 from a wrong path prefix, a login page, a proxy's error page): the URL is the
// first thing to check, and the decoder's "invalid character '<'" does not say HTML came back.
func (p *Prometheus) withEndpoint(err error, endpoint string) error {
	var apiErr *v1.Error
	if !errors.As(err, &apiErr) || apiErr.Type == v1.ErrBadData || apiErr.Type == v1.ErrTimeout || apiErr.Type == v1.ErrCanceled {
		return err
	}
	u := redactURL(p.client.URL(endpoint, nil).String())
	if apiErr.Type == v1.ErrBadResponse && strings.Contains(apiErr.Msg, "invalid character '<'") {
		return fmt.Errorf("%w: %s answered with HTML, not the Prometheus API (is prometheus.url Prometheus, with its path prefix?)", err, u)
	}
	return fmt.Errorf("%w (from %s)", err, u)
}

// snippet shortens a response body for an error message: one line, at most 200 bytes.
func snippet(body string) string {
	s := strings.Join(strings.Fields(body), " ")
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}

func valueType(v model.Value) string {
	if v == nil {
		return "nothing"
	}
	return v.Type().String()
}

// countSamples counts the float and histogram samples of a query result.
func countSamples(v model.Value) int {
	switch v := v.(type) {
	case model.Matrix:
		n := 0
		for _, s := range v {
			n += len(s.Values) + len(s.Histograms)
		}
		return n
	case model.Vector:
		return len(v)
	case *model.Scalar, *model.String:
		return 1
	}
	return 0
}

// queryMetrics are the source's own metrics, so the daemon's load on Prometheus is visible.
type queryMetrics struct {
	succeeded, failed prometheus.Counter
	duration          prometheus.Histogram
	samples           prometheus.Counter
}

func newQueryMetrics(reg prometheus.Registerer) (*queryMetrics, error) {
	queries := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "emergent_prometheus_queries_total",
		Help: "Queries sent to Prometheus, by outcome (success or error).",
	}, []string{"outcome"})
	duration := prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "emergent_prometheus_query_duration_seconds",
		Help: "Time Prometheus took to answer a query, excluding time waiting for a query slot.",
		// From a cached instant query to a long catch-up range query near the timeout.
		Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
	})
	samples := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "emergent_prometheus_query_samples_total",
		Help: "Samples returned by Prometheus queries.",
	})
	if reg != nil {
		var err error
		if queries, err = register(reg, queries); err != nil {
			return nil, err
		}
		if duration, err = register(reg, duration); err != nil {
			return nil, err
		}
		if samples, err = register(reg, samples); err != nil {
			return nil, err
		}
	}
	return &queryMetrics{
		succeeded: queries.WithLabelValues("success"),
		failed:    queries.WithLabelValues("error"),
		duration:  duration,
		samples:   samples,
	}, nil
}

// register registers c, or reuses the identical collector already registered, so several
// sources may share one registry and add up in the same series.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing, nil
			}
		}
		return c, fmt.Errorf("registering prometheus source metrics: %w", err)
	}
	return c, nil
}

// limitTransport caps the size of every response body it returns.
type limitTransport struct {
	next http.RoundTripper
	max  int64
}

// RoundTrip implements http.RoundTripper.
func (t *limitTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.next.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	if resp.ContentLength > t.max {
		resp.Body.Close()
		return nil, fmt.Errorf("%w: Content-Length %d exceeds %d bytes", ErrResponseTooLarge, resp.ContentLength, t.max)
	}
	resp.Body = &limitedBody{ReadCloser: resp.Body, remaining: t.max, max: t.max}
	return resp, nil
}

// limitedBody fails with ErrResponseTooLarge once more than max bytes are read.
type limitedBody struct {
	io.ReadCloser
	remaining, max int64
}

func (b *limitedBody) Read(p []byte) (int, error) {
	if b.remaining <= 0 {
		// Limit reached: only a clean end of body is acceptable now.
		var one [1]byte
		n, err := b.ReadCloser.Read(one[:])
		if n > 0 {
			return 0, fmt.Errorf("%w: more than %d bytes", ErrResponseTooLarge, b.max)
		}
		return 0, err
	}
	if int64(len(p)) > b.remaining {
		p = p[:b.remaining]
	}
	n, err := b.ReadCloser.Read(p)
	b.remaining -= int64(n)
	return n, err
}
