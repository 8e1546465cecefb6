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

// instance is one instance of the service (one pod's lifetime in a slot). It serves user
// requests (/api/work), uploads (/api/upload) and a deep health check (/healthz) that exercises
// the integration, and exposes its own /metrics, so Prometheus scrapes each instance as a target
// of its own.
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
	return mux
}

// close releases the instance's Redis connections.
func (in *instance) close() {
	in.cache.Close()
	in.tokensR.Close()
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

// slot is one instance listener: the process the lab started and its port, scraped as a
// target whether or not an instance runs in it (a pod slot of a deployment). Active, it serves
// an instance; inactive, it answers 503 to everything but its control endpoints, /metrics
// included, so Prometheus records up=0 and no series of it. Each activation starts a fresh
// instance — empty token cache, new Redis connections, counters from zero — as a new pod would.
type slot struct {
	cfg    instanceConfig
	logger *slog.Logger

	mu       sync.Mutex
	mode     mode
	cur      *instance       // nil while inactive
	curH     http.Handler    // cur's handler
	inflight *sync.WaitGroup // requests cur is serving
}

func newSlot(cfg instanceConfig, active bool, logger *slog.Logger) *slot {
	s := &slot{cfg: cfg, logger: logger, mode: cfg.mode}
	s.setActive(active)
	return s
}

// setActive starts a fresh instance (on) or stops the current one (off), and reports whether
// that changed anything. A stopped instance closes its connections once its requests are done.
func (s *slot) setActive(on bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case on && s.cur == nil:
		cfg := s.cfg
		cfg.mode = s.mode
		s.cur = newInstance(cfg, s.logger)
		s.curH = s.cur.handler()
		s.inflight = &sync.WaitGroup{}
		return true
	case !on && s.cur != nil:
		in, wg := s.cur, s.inflight
		s.cur, s.curH, s.inflight = nil, nil, nil
		go func() {
			wg.Wait()
			in.close()
		}()
		return true
	}
	return false
}

func (s *slot) active() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cur != nil
}

func (s *slot) currentMode() mode {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mode
}

// setMode sets the mode of the running instance and of every instance started later.
func (s *slot) setMode(m mode) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mode = m
	if s.cur != nil {
		s.cur.setMode(m)
	}
}

func (s *slot) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/-/healthy", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })
	mux.HandleFunc("/mode", s.serveMode)
	mux.HandleFunc("/active", s.serveActive)
	mux.HandleFunc("/", s.serveInstance)
	return mux
}

// serveInstance hands a request to the running instance, or answers 503 while there is none.
func (s *slot) serveInstance(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	h, wg := s.curH, s.inflight
	if h != nil {
		wg.Add(1)
	}
	s.mu.Unlock()
	if h == nil {
		http.Error(w, "instance inactive (scaled in)", http.StatusServiceUnavailable)
		return
	}
	defer wg.Done()
	h.ServeHTTP(w, r)
}

// serveMode shows (GET) or changes (POST m=<mode>) the mode; an inactive slot keeps it for its
// next instance.
func (s *slot) serveMode(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodPost {
		m, err := parseMode(r.FormValue("m"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if prev := s.currentMode(); m != prev {
			s.logger.Info("mode switched", "from", prev, "to", m)
		}
		s.setMode(m)
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]string{"mode": string(s.currentMode())})
}

// serveActive shows (GET) or changes (POST active=true|false) whether an instance runs here.
func (s *slot) serveActive(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodPost {
		on, err := strconv.ParseBool(r.FormValue("active"))
		if err != nil {
			http.Error(w, fmt.Sprintf("active must be true or false, got %q", r.FormValue("active")), http.StatusBadRequest)
			return
		}
		if s.setActive(on) {
			if on {
				s.logger.Info("instance started (fresh caches)", "mode", s.currentMode())
			} else {
				s.logger.Info("instance stopped (scaled in)")
			}
		}
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]bool{"active": s.active()})
}

// serve runs the slot on ln until ctx is done.
func (s *slot) serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{Handler: s.handler(), ReadHeaderTimeout: 5 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	s.logger.Info("instance serving", "addr", ln.Addr().String(), "mode", s.currentMode(), "active", s.active())
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
	s.setActive(false)
	return nil
}
