package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Bounds on what the lab may be asked to do: it is a load generator, and must never become
// the runaway traffic it demonstrates.
const (
	maxRate           = 500.0
	maxUploadRate     = 50.0
	maxDuration       = 24 * time.Hour
	maxInstances      = 32
	maxKeys           = 100_000
	minHealthInterval = 100 * time.Millisecond
	maxSurgeFactor    = 20.0
	maxTokensActive   = 100
	// maxInFlight bounds concurrent load requests; beyond it requests are dropped (and
	// counted), so a slow service slows nothing down but itself.
	maxInFlight = 64
)

// labConfig is the run command's configuration.
type labConfig struct {
	listen         string
	service        string
	instances      int
	instanceAddrs  []string
	active         int // instances active at start: the first ones
	tokenMaxActive int
	redisAddr      string
	mode           mode
	idle           bool
	rate           float64
	uploadRate     float64
	duration       time.Duration
	healthInterval time.Duration
	keys           int
	expiry         time.Duration
	margin         time.Duration
	surgeFactor    float64
	surgeFor       time.Duration
	logLevel       string
}

func (c *labConfig) validate() error {
	var errs []error
	check := func(ok bool, format string, args ...any) {
		if !ok {
			errs = append(errs, fmt.Errorf(format, args...))
		}
	}
	if len(c.instanceAddrs) > 0 {
		c.instances = len(c.instanceAddrs)
	}
	check(c.instances >= 1 && c.instances <= maxInstances, "--instances must be in [1, %d], got %d", maxInstances, c.instances)
	check(c.active >= 1 && c.active <= c.instances, "--active must be in [1, --instances=%d], got %d", c.instances, c.active)
	check(c.tokenMaxActive >= 1 && c.tokenMaxActive <= maxTokensActive, "--token.max-active must be in [1, %d], got %d", maxTokensActive, c.tokenMaxActive)
	check(c.rate >= 0 && c.rate <= maxRate, "--rate must be in [0, %g], got %g", maxRate, c.rate)
	check(c.uploadRate >= 0 && c.uploadRate <= maxUploadRate, "--upload-rate must be in [0, %g], got %g", maxUploadRate, c.uploadRate)
	check(c.duration > 0 && c.duration <= maxDuration, "--duration must be in (0, %s], got %s", maxDuration, c.duration)
	check(c.healthInterval >= minHealthInterval, "--health-interval must be at least %s, got %s", minHealthInterval, c.healthInterval)
	check(c.keys >= 1 && c.keys <= maxKeys, "--keys must be in [1, %d], got %d", maxKeys, c.keys)
	check(c.expiry >= time.Second, "--token.expiry must be at least 1s (the provider counts whole seconds), got %s", c.expiry)
	check(c.margin >= 0 && c.margin < c.expiry, "--token.safety-margin must be in [0, token.expiry), got %s", c.margin)
	check(c.surgeFactor >= 1 && c.surgeFactor <= maxSurgeFactor, "--surge.factor must be in [1, %g], got %g", maxSurgeFactor, c.surgeFactor)
	check(c.surgeFor > 0, "--surge.for must be positive, got %s", c.surgeFor)
	return errors.Join(errs...)
}

// loadProfile is what the load generator does now; POST /mode changes it.
type loadProfile struct {
	Mode mode `json:"mode"`
	// Active is how many instances run, the first ones: the load balancer and the prober
	// reach only them.
	Active     int       `json:"active"`
	Idle       bool      `json:"idle"`
	Rate       float64   `json:"rate"`
	UploadRate float64   `json:"upload_rate"`
	SurgeUntil time.Time `json:"surge_until,omitzero"`
}

// rates returns the user request and upload rates in effect at now.
func (p loadProfile) rates(now time.Time, surgeFactor float64) (requests, uploads float64) {
	if p.Idle {
		return 0, 0
	}
	requests = p.Rate
	if p.Mode == modeSurge && now.Before(p.SurgeUntil) {
		requests *= surgeFactor
	}
	return requests, p.UploadRate
}

// child is one instance process.
type child struct {
	name   string
	addr   string
	cmd    *exec.Cmd
	exited chan struct{}
	err    error
}

// lab is the run command: the token provider, the instance processes and the load, behind one
// small HTTP endpoint.
type lab struct {
	cfg      labConfig
	logger   *slog.Logger
	self     string // this executable, re-run as `instance`
	reg      *prometheus.Registry
	prov     *provider
	client   *http.Client
	children []*child
	ready    atomic.Bool

	sent     *prometheus.CounterVec
	dropped  prometheus.Counter
	activeG  prometheus.Gauge
	inflight chan struct{}
	wg       sync.WaitGroup
	rr       atomic.Uint64 // round robin over instances

	switchMu sync.Mutex // serialises POST /mode: one change reaches the instances at a time
	mu       sync.Mutex // guards profile
	profile  loadProfile
}

func newLab(cfg labConfig, logger *slog.Logger) (*lab, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("finding own executable: %w", err)
	}
	reg := prometheus.NewRegistry()
	l := &lab{
		cfg: cfg, logger: logger, self: self, reg: reg,
		prov: newProvider(cfg.expiry, cfg.tokenMaxActive, reg),
		client: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
			MaxIdleConnsPerHost: maxInFlight, IdleConnTimeout: 30 * time.Second,
		}},
		sent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lab_load_requests_total", Help: "Requests the load generator sent, by path and response code.",
		}, []string{"path", "code"}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "lab_load_dropped_total", Help: "Requests not sent because too many were in flight.",
		}),
		activeG: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "lab_active_instances", Help: "Instances running (the others answer 503 as empty slots).",
		}),
		inflight: make(chan struct{}, maxInFlight),
		profile:  loadProfile{Mode: cfg.mode, Active: cfg.active, Idle: cfg.idle, Rate: cfg.rate, UploadRate: cfg.uploadRate},
	}
	if cfg.mode == modeSurge {
		l.profile.SurgeUntil = time.Now().Add(cfg.surgeFor)
	}
	l.activeG.Set(float64(cfg.active))
	reg.MustRegister(l.sent, l.dropped, l.activeG)
	return l, nil
}

// run serves until ctx is done, the duration has passed, or an instance dies (an error).
func (l *lab) run(ctx context.Context) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)

	if err := l.warm(ctx); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", l.cfg.listen)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: l.handler(), ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			cancel(fmt.Errorf("web server: %w", err))
		}
	}()
	defer func() {
		sctx, c := context.WithTimeout(context.Background(), 2*time.Second)
		defer c()
		_ = srv.Shutdown(sctx)
	}()

	providerURL := "http://" + ln.Addr().String() + "/provider"
	defer l.stopChildren()
	for i := range l.cfg.instances {
		addr := "127.0.0.1:0"
		if i < len(l.cfg.instanceAddrs) {
			addr = l.cfg.instanceAddrs[i]
		}
		c, err := l.startChild(i, addr, providerURL, i < l.cfg.active)
		if err != nil {
			return err
		}
		l.children = append(l.children, c)
		go func() {
			<-c.exited
			if ctx.Err() == nil {
				cancel(fmt.Errorf("%s exited unexpectedly: %v", c.name, c.err))
			}
		}()
	}
	if err := l.waitChildren(ctx); err != nil {
		return err
	}
	l.ready.Store(true)
	addrs := make([]string, len(l.children))
	for i, c := range l.children {
		addrs[i] = c.addr
	}
	l.logger.Info("lab ready", "addr", ln.Addr().String(), "instances", addrs, "active", l.cfg.active, "mode", l.cfg.mode,
		"idle", l.cfg.idle, "rate", l.cfg.rate, "upload_rate", l.cfg.uploadRate, "duration", l.cfg.duration)

	loadCtx, stop := context.WithTimeout(ctx, l.cfg.duration)
	defer stop()
	l.runLoad(loadCtx)
	l.wg.Wait()
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	if ctx.Err() == nil {
		l.logger.Info("duration elapsed; stopping", "duration", l.cfg.duration)
	}
	return nil
}

// warm fills the cache with every item, as the service's first requests would. It waits for
// Redis a little: the lab may start together with it.
func (l *lab) warm(ctx context.Context) error {
	rdb := newRedis(l.cfg.redisAddr, cacheDB)
	defer rdb.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := rebuild(ctx, rdb, l.cfg.keys)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("warming the cache in Redis at %s: %w", l.cfg.redisAddr, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// startChild starts instance i as a process of its own on a listener the lab opens, so the
// address is known (and free) before the process runs. An inactive one waits, answering 503,
// until the lab scales out onto it.
func (l *lab) startChild(i int, addr, providerURL string, active bool) (*child, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("instance %d: %w", i+1, err)
	}
	f, err := ln.(*net.TCPListener).File()
	ln.Close() // f holds the socket now
	if err != nil {
		return nil, fmt.Errorf("instance %d: %w", i+1, err)
	}
	defer f.Close() // the child has its own copy once started
	c := &child{name: fmt.Sprintf("instance-%d", i+1), addr: ln.Addr().String(), exited: make(chan struct{})}
	c.cmd = exec.Command(l.self, "instance",
		"--service="+l.cfg.service,
		"--redis.addr="+l.cfg.redisAddr,
		"--mode="+string(l.cfg.mode),
		"--keys="+strconv.Itoa(l.cfg.keys),
		"--token.safety-margin="+l.cfg.margin.String(),
		"--log.level="+l.cfg.logLevel,
		"--provider.url="+providerURL,
		"--name="+c.name,
	)
	if !active {
		c.cmd.Args = append(c.cmd.Args, "--inactive")
	}
	c.cmd.ExtraFiles = []*os.File{f} // file descriptor 3 in the child
	c.cmd.Stdout, c.cmd.Stderr = os.Stderr, os.Stderr
	// If the lab dies without stopping its instances, they go with it.
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := c.cmd.Start(); err != nil {
		return nil, fmt.Errorf("%s: %w", c.name, err)
	}
	go func() {
		c.err = c.cmd.Wait()
		close(c.exited)
	}()
	return c, nil
}

func (l *lab) waitChildren(ctx context.Context) error {
	deadline := time.Now().Add(15 * time.Second)
	for _, c := range l.children {
		for {
			resp, err := l.client.Get("http://" + c.addr + "/-/healthy")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					break
				}
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%s at %s not healthy after 15s: %v", c.name, c.addr, err)
			}
			select {
			case <-ctx.Done():
				return context.Cause(ctx)
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	return nil
}

// stopChildren stops the instances this lab started, by their PIDs: SIGTERM, then SIGKILL.
func (l *lab) stopChildren() {
	for _, c := range l.children {
		_ = c.cmd.Process.Signal(syscall.SIGTERM)
	}
	for _, c := range l.children {
		select {
		case <-c.exited:
		case <-time.After(5 * time.Second):
			_ = c.cmd.Process.Kill()
			<-c.exited
		}
	}
}

func (l *lab) currentProfile() loadProfile {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.profile
}

// runLoad sends user requests and uploads round-robin over the active instances (the load
// balancer) and probes every active instance's /healthz each health interval (the prober),
// until ctx is done. An instance that becomes active is probed at once, as a new pod is.
func (l *lab) runLoad(ctx context.Context) {
	const tickEvery = 10 * time.Millisecond
	tick := time.NewTicker(tickEvery)
	defer tick.Stop()
	nextProbe := make([]time.Time, len(l.children))
	start := time.Now()
	for i := range l.cfg.active { // staggered, as independent probers are
		nextProbe[i] = start.Add(time.Duration(i) * l.cfg.healthInterval / time.Duration(l.cfg.active))
	}
	var requestsDue, uploadsDue float64
	last := start
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			dt := now.Sub(last).Seconds()
			last = now
			p := l.currentProfile()
			active := l.children[:p.Active]
			reqRate, upRate := p.rates(now, l.cfg.surgeFactor)
			requestsDue += reqRate * dt
			uploadsDue += upRate * dt
			for ; requestsDue >= 1; requestsDue-- {
				l.send(ctx, active[l.rr.Add(1)%uint64(len(active))], http.MethodGet, "/api/work")
			}
			for ; uploadsDue >= 1; uploadsDue-- {
				l.send(ctx, active[l.rr.Add(1)%uint64(len(active))], http.MethodPost, "/api/upload")
			}
			for i, c := range active {
				if !now.Before(nextProbe[i]) {
					nextProbe[i] = now.Add(l.cfg.healthInterval)
					l.send(ctx, c, http.MethodGet, "/healthz")
				}
			}
		}
	}
}

func (l *lab) send(ctx context.Context, c *child, method, path string) {
	select {
	case l.inflight <- struct{}{}:
	default:
		l.dropped.Inc()
		return
	}
	l.wg.Add(1)
	go func() {
		defer func() { <-l.inflight; l.wg.Done() }()
		code := "error"
		req, err := http.NewRequestWithContext(ctx, method, "http://"+c.addr+path, nil)
		if err == nil {
			var resp *http.Response
			if resp, err = l.client.Do(req); err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				code = strconv.Itoa(resp.StatusCode)
			}
		}
		if err != nil && ctx.Err() != nil {
			return // stopping: not a failure of the service
		}
		l.sent.WithLabelValues(path, code).Inc()
	}()
}

func (l *lab) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/provider/token", l.prov.serveToken)
	mux.HandleFunc("/provider/resource", l.prov.serveResource)
	mux.HandleFunc("/mode", l.serveMode)
	mux.HandleFunc("/api/v1/instances", l.serveInstances)
	mux.Handle("/metrics", promhttp.HandlerFor(l.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/-/healthy", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })
	mux.HandleFunc("/-/ready", func(w http.ResponseWriter, _ *http.Request) {
		if !l.ready.Load() {
			http.Error(w, "starting instances", http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ready\n")
	})
	return mux
}

// serveInstances lists every instance's address (active or not: each is a scrape target) and
// how many, the first ones, are active, for scrape configs.
func (l *lab) serveInstances(w http.ResponseWriter, _ *http.Request) {
	if !l.ready.Load() {
		http.Error(w, "starting instances", http.StatusServiceUnavailable)
		return
	}
	addrs := make([]string, len(l.children))
	for i, c := range l.children {
		addrs[i] = c.addr
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"service": l.cfg.service, "instances": addrs, "active": l.currentProfile().Active})
}

// serveMode shows (GET) or changes (POST) the mode and the load: m=<mode>, active=<instances>,
// idle=true|false, rate=<req/s>, upload_rate=<uploads/s>, each optional. The change is in
// effect on every instance when the request returns: a scale-out starts the new instances
// (fresh, in the new mode) before the load balancer sends to them, a scale-in stops sending
// before it stops them.
func (l *lab) serveMode(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodPost {
		if !l.ready.Load() {
			http.Error(w, "starting instances", http.StatusServiceUnavailable)
			return
		}
		l.switchMu.Lock()
		defer l.switchMu.Unlock()
		prev := l.currentProfile()
		p, err := l.parseProfile(r, prev)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		for _, c := range l.children { // inactive ones too: their next instance starts in it
			if err := l.setChildMode(r.Context(), c, p.Mode); err != nil {
				http.Error(w, err.Error(), http.StatusBadGateway)
				return
			}
		}
		for i, c := range l.children[prev.Active:max(prev.Active, p.Active)] {
			if err := l.setChildActive(r.Context(), c, true); err != nil {
				// Back to prev: the load balancer never sent to the ones started.
				for _, started := range l.children[prev.Active : prev.Active+i] {
					_ = l.setChildActive(context.WithoutCancel(r.Context()), started, false)
				}
				http.Error(w, err.Error(), http.StatusBadGateway)
				return
			}
		}
		if p.Mode == modeSurge && prev.Mode != modeSurge {
			p.SurgeUntil = time.Now().Add(l.cfg.surgeFor)
		}
		l.mu.Lock()
		l.profile = p
		l.mu.Unlock()
		l.activeG.Set(float64(p.Active))
		for _, c := range l.children[p.Active:max(p.Active, prev.Active)] {
			if err := l.setChildActive(r.Context(), c, false); err != nil {
				http.Error(w, err.Error(), http.StatusBadGateway)
				return
			}
		}
		l.logger.Info("load profile changed", "mode", p.Mode, "active", p.Active, "idle", p.Idle, "rate", p.Rate, "upload_rate", p.UploadRate)
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(l.currentProfile())
}

func (l *lab) parseProfile(r *http.Request, p loadProfile) (loadProfile, error) {
	var err error
	if v := r.FormValue("m"); v != "" {
		if p.Mode, err = parseMode(v); err != nil {
			return p, err
		}
	}
	if v := r.FormValue("active"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > l.cfg.instances {
			return p, fmt.Errorf("active must be an integer in [1, %d] (the instances started), got %q", l.cfg.instances, v)
		}
		p.Active = n
	}
	if v := r.FormValue("idle"); v != "" {
		if p.Idle, err = strconv.ParseBool(v); err != nil {
			return p, fmt.Errorf("idle: %w", err)
		}
	}
	rate := func(name string, dst *float64, maxValue float64) error {
		v := r.FormValue(name)
		if v == "" {
			return nil
		}
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f < 0 || f > maxValue {
			return fmt.Errorf("%s must be a number in [0, %g], got %q", name, maxValue, v)
		}
		*dst = f
		return nil
	}
	if err := rate("rate", &p.Rate, maxRate); err != nil {
		return p, err
	}
	if err := rate("upload_rate", &p.UploadRate, maxUploadRate); err != nil {
		return p, err
	}
	return p, nil
}

func (l *lab) setChildMode(ctx context.Context, c *child, m mode) error {
	return l.postChild(ctx, c, "switching mode", "/mode?m="+url.QueryEscape(string(m)))
}

// setChildActive starts (a fresh instance) or stops the instance in c.
func (l *lab) setChildActive(ctx context.Context, c *child, on bool) error {
	what := "scaling in"
	if on {
		what = "scaling out"
	}
	return l.postChild(ctx, c, what, "/active?active="+strconv.FormatBool(on))
}

func (l *lab) postChild(ctx context.Context, c *child, what, pathQuery string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+c.addr+pathQuery, nil)
	if err != nil {
		return err
	}
	resp, err := l.client.Do(req)
	if err != nil {
		return fmt.Errorf("%s: %s: %w", c.name, what, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("%s: %s: %s: %s", c.name, what, resp.Status, body)
	}
	return nil
}
