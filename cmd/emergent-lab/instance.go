package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	randv2 "math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// Redis databases: the application cache (what a cache library flushes) and the token store.
// Apps commonly keep them apart; FLUSHDB only empties the current one.
const (
	cacheDB = 0
	tokenDB = 1
)

// rebuildBatch is how many SETs a rebuild sends per round trip. Redis counts every command of
// a pipeline, so the command rate is the same as one SET per round trip, only faster.
const rebuildBatch = 500

// instanceConfig configures one instance (one PHP-FPM master, one pod).
type instanceConfig struct {
	name        string // for logs and the lock owner
	service     string // the client ID at the provider; key prefix
	redisAddr   string
	providerURL string
	mode        mode
	keys        int
	margin      time.Duration
}

// instance is one instance of the service. It serves user requests (/api/work), uploads
// (/api/upload) and a deep health check (/healthz) that exercises the integration, and exposes
// its own /metrics, so Prometheus scrapes each instance as a target of its own.
type instance struct {
	cfg     instanceConfig
	logger  *slog.Logger
	cache   *redis.Client // cacheDB
	tokensR *redis.Client // tokenDB
	prov    *providerClient
	local   *memoryTokens
	shared  *redisTokens
	reg     *prometheus.Registry
	m       instanceMetrics

	mu   sync.Mutex
	mode mode
}

type instanceMetrics struct {
	requests    *prometheus.CounterVec
	uploads     prometheus.Counter
	integration *prometheus.CounterVec
	mode        *prometheus.GaugeVec
	tokens      tokenCounters
}

func newRedis(addr string, db int) *redis.Client {
	return redis.NewClient(&redis.Options{
		Addr: addr, DB: db,
		// RESP2 and no CLIENT SETINFO / MAINT_NOTIFICATIONS handshakes: Redis's command
		// counters then show the application's commands and nothing else.
		Protocol: 2, DisableIdentity: true,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
		DialTimeout:              time.Second, ReadTimeout: 2 * time.Second, WriteTimeout: 2 * time.Second,
		MaxRetries: 1,
	})
}

func newInstance(cfg instanceConfig, logger *slog.Logger) *instance {
	reg := prometheus.NewRegistry()
	counter := func(name, help string) prometheus.Counter {
		c := prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
		reg.MustRegister(c)
		return c
	}
	m := instanceMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "http_requests_total", Help: "Inbound HTTP requests, by handler and response code.",
		}, []string{"handler", "code"}),
		integration: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lab_integration_calls_total", Help: "Calls to the integration, by response code (401: the token was revoked).",
		}, []string{"code"}),
		mode: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "lab_mode", Help: "1 for the mode the instance runs in.",
		}, []string{"mode"}),
		tokens: tokenCounters{
			// The seed's metric names, exactly (no _total: they predate the convention).
			hits:   counter("token_cache_hits", "Integration token lookups served from the cache."),
			misses: counter("token_cache_misses", "Integration token lookups that found no usable token."),
			mints:  counter("token_mint_count", "Integration tokens this instance minted."),
		},
		uploads: counter("uploads_total", "Uploads handled (writes)."),
	}
	reg.MustRegister(m.requests, m.integration, m.mode)
	// Series exist from the start at 0, so rate() sees the first requests too.
	for _, h := range []string{"/api/work", "/api/upload", "/healthz"} {
		m.requests.WithLabelValues(h, "200")
	}
	m.integration.WithLabelValues("200")
	m.integration.WithLabelValues("401")

	prov := &providerClient{base: cfg.providerURL, clientID: cfg.service, http: &http.Client{Timeout: 5 * time.Second}}
	in := &instance{
		cfg: cfg, logger: logger, reg: reg, m: m, prov: prov,
		cache:   newRedis(cfg.redisAddr, cacheDB),
		tokensR: newRedis(cfg.redisAddr, tokenDB),
	}
	mint := func(ctx context.Context) (string, time.Duration, error) {
		tok, expiry, err := prov.mint(ctx)
		if err == nil {
			m.tokens.mints.Inc()
		}
		return tok, expiry, err
	}
	var owner [8]byte
	_, _ = rand.Read(owner[:])
	in.local = &memoryTokens{mint: mint, margin: cfg.margin, count: m.tokens}
	in.shared = &redisTokens{
		rdb: in.tokensR, key: "token:" + cfg.service, lockKey: "lock:token:" + cfg.service,
		owner: cfg.name + "-" + hex.EncodeToString(owner[:]), mint: mint, margin: cfg.margin, count: m.tokens,
	}
	in.setMode(cfg.mode)
	return in
}

func (in *instance) currentMode() mode {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.mode
}

func (in *instance) setMode(m mode) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.mode = m
	in.m.mode.Reset()
	in.m.mode.WithLabelValues(string(m)).Set(1)
}

func (in *instance) tokens() tokenSource {
	if in.currentMode().tokensInRedis() {
		return in.shared
	}
	return in.local
}

func (in *instance) handler() http.Handler {
	instrument := func(name string, h http.HandlerFunc) http.Handler {
		return promhttp.InstrumentHandlerCounter(in.m.requests.MustCurryWith(prometheus.Labels{"handler": name}), h)
	}
	mux := http.NewServeMux()
	mux.Handle("/api/work", instrument("/api/work", in.work))
	mux.Handle("/api/upload", instrument("/api/upload", in.upload))
	mux.Handle("/healthz", instrument("/healthz", in.healthz))
	mux.Handle("/metrics", promhttp.HandlerFor(in.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/mode", in.serveMode)
	mux.HandleFunc("/-/healthy", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })
	return mux
}

// callIntegration calls the integration with the cached token. A 401 means another
// instance's mint revoked it (or it expired): forget it, get another, try once more.
func (in *instance) callIntegration(ctx context.Context) error {
	src := in.tokens()
	for range 2 {
		tok, err := src.get(ctx)
		if err != nil {
			return err
		}
		code, err := in.prov.use(ctx, tok)
		if err != nil {
			in.m.integration.WithLabelValues("error").Inc()
			return err
		}
		in.m.integration.WithLabelValues(strconv.Itoa(code)).Inc()
		switch code {
		case http.StatusOK:
			return nil
		case http.StatusUnauthorized:
			if err := src.invalidate(ctx, tok); err != nil {
				return err
			}
		default:
			return fmt.Errorf("integration answered %d", code)
		}
	}
	return errors.New("integration rejected a fresh token")
}

func itemKey(k int) string { return "item:" + strconv.Itoa(k) }

// work is a user request: read an item through the cache (cache-aside) and call the
// integration.
func (in *instance) work(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	k := randv2.IntN(in.cfg.keys)
	err := in.cache.Get(ctx, itemKey(k)).Err()
	if errors.Is(err, redis.Nil) {
		// The database row, into the cache.
		err = in.cache.Set(ctx, itemKey(k), itemValue(k), 0).Err()
	}
	if err == nil {
		err = in.callIntegration(ctx)
	}
	if err != nil {
		in.logger.Debug("request failed", "err", err)
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	io.WriteString(w, "ok\n")
}

// upload is a write. The cache library of the flush-storm seed flushes Redis and rebuilds the
// whole cache from the database on every upload; the fix invalidates only the key it changed.
func (in *instance) upload(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "use POST", http.StatusMethodNotAllowed)
		return
	}
	in.m.uploads.Inc()
	ctx := r.Context()
	k := randv2.IntN(in.cfg.keys)
	var err error
	if in.currentMode().flushOnUpload() {
		if err = in.cache.FlushDB(ctx).Err(); err == nil {
			err = rebuild(ctx, in.cache, in.cfg.keys)
		}
	} else {
		err = in.cache.Del(ctx, itemKey(k)).Err()
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	io.WriteString(w, "ok\n")
}

// healthz is a deep health check: it calls the integration, as many health checks do, so a
// prober hitting every instance keeps a per-instance token cache minting with no user around.
func (in *instance) healthz(w http.ResponseWriter, r *http.Request) {
	if err := in.callIntegration(r.Context()); err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	io.WriteString(w, "ok\n")
}

func (in *instance) serveMode(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodPost {
		m, err := parseMode(r.FormValue("m"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if m != in.currentMode() {
			in.logger.Info("mode switched", "from", in.currentMode(), "to", m)
		}
		in.setMode(m)
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]string{"mode": string(in.currentMode())})
}

func itemValue(k int) string { return fmt.Sprintf(`{"id":%d,"name":"item %d"}`, k, k) }

// rebuild writes every item of the "database" into the cache.
func rebuild(ctx context.Context, rdb *redis.Client, keys int) error {
	for start := 0; start < keys; start += rebuildBatch {
		pipe := rdb.Pipeline()
		for k := start; k < min(start+rebuildBatch, keys); k++ {
			pipe.Set(ctx, itemKey(k), itemValue(k), 0)
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return fmt.Errorf("rebuild: %w", err)
		}
	}
	return nil
}

// serve runs the instance on ln until ctx is done.
func (in *instance) serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{Handler: in.handler(), ReadHeaderTimeout: 5 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	in.logger.Info("instance serving", "addr", ln.Addr().String(), "mode", in.currentMode())
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
	in.cache.Close()
	in.tokensR.Close()
	return nil
}
