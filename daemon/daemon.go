// Package daemon runs emergentd: it loads the configuration, bootstraps the engine from
// Prometheus history, evaluates on every step, hands alerts to the delivery manager, serves the
// web endpoints and reloads. main only parses flags and handles signals, so tests start the
// whole daemon with Run.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/emergent-sh/emergent/alerts"
	"github.com/emergent-sh/emergent/config"
	"github.com/emergent-sh/emergent/detector"
	"github.com/emergent-sh/emergent/engine"
	"github.com/emergent-sh/emergent/internal/chart"
	"github.com/emergent-sh/emergent/sources"
	"github.com/emergent-sh/emergent/statuspage"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	versioncollector "github.com/prometheus/client_golang/prometheus/collectors/version"
	"github.com/prometheus/exporter-toolkit/web"
	"gonum.org/v1/plot/vg"
)

// Options are what main passes in from flags.
type Options struct {
	ConfigFile string
	// PrometheusURL overrides prometheus.url of the file when set.
	PrometheusURL string
	// StoragePath holds optional local state (Slack message ids); empty disables it.
	StoragePath string
	// Web is the exporter-toolkit listener configuration (addresses, TLS/basic-auth file).
	Web *web.FlagConfig
	// EnableReload allows POST /-/reload.
	EnableReload bool
	// ExternalURL is where users reach emergentd (--web.external-url); its path prefixes every
	// page and link, for running behind a reverse proxy.
	ExternalURL string
	Logger      *slog.Logger
	// Reload receives a value for every SIGHUP.
	Reload <-chan struct{}
	// Now is the clock; tests may replace it.
	Now func() time.Time
}

// generation is the set of parts built from one configuration.
type generation struct {
	cfg     *config.Config
	engine  *engine.Engine
	manager *alerts.Manager
	engReg  *prometheus.Registry // source and engine metrics
	mgrReg  *prometheus.Registry // delivery metrics
}

// Daemon is a running emergentd.
type Daemon struct {
	opts   Options
	logger *slog.Logger
	reg    *prometheus.Registry // process-wide metrics

	mu  sync.Mutex
	cur *generation

	reloadOK      prometheus.Gauge
	reloadSuccess prometheus.Gauge
	reloadRequest chan chan error
	// stateTried is set once the saved evaluation state was tried (loadState): only the first
	// engine of the process may start from it.
	stateTried bool
}

// LoadConfig reads the file and applies command-line overrides and storage defaults.
func LoadConfig(file, prometheusURL, storagePath string) (*config.Config, error) {
	cfg, err := config.LoadFile(file)
	if err != nil {
		return nil, err
	}
	if prometheusURL != "" {
		cfg.Prometheus.URL = prometheusURL
	}
	if cfg.Prometheus.URL == "" {
		return nil, fmt.Errorf("%s: prometheus.url is not set (set it in the file or with --prometheus.url)", file)
	}
	for i := range cfg.Receivers {
		r := &cfg.Receivers[i]
		if r.Type == config.ReceiverSlack && r.StateFile == "" && storagePath != "" {
			r.StateFile = filepath.Join(storagePath, "slack-"+r.Name+".json")
		}
	}
	return cfg, nil
}

// New loads the configuration and builds the daemon; nothing runs until Run.
func New(opts Options) (*Daemon, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	d := &Daemon{opts: opts, logger: opts.Logger, reg: prometheus.NewRegistry(), reloadRequest: make(chan chan error)}
	d.reloadOK = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "emergent_config_last_reload_successful", Help: "Whether the last configuration reload succeeded.",
	})
	d.reloadSuccess = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "emergent_config_last_reload_success_timestamp_seconds", Help: "Timestamp of the last successful configuration reload.",
	})
	d.reg.MustRegister(d.reloadOK, d.reloadSuccess,
		versioncollector.NewCollector("emergent"),
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		engine.NewGroupCollector(d.engine))
	if opts.StoragePath != "" {
		if err := os.MkdirAll(opts.StoragePath, 0o755); err != nil {
			return nil, fmt.Errorf("storage path: %w", err)
		}
	}
	cfg, err := LoadConfig(opts.ConfigFile, opts.PrometheusURL, opts.StoragePath)
	if err != nil {
		return nil, err
	}
	gen, err := d.build(cfg, nil)
	if err != nil {
		return nil, err
	}
	d.cur = gen
	d.reloadOK.Set(1)
	d.reloadSuccess.SetToCurrentTime()
	return d, nil
}

func (d *Daemon) engine() *engine.Engine {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cur == nil {
		return nil
	}
	return d.cur.engine
}

func (d *Daemon) current() *generation {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cur
}

// build makes the parts for cfg, reusing those of prev that cfg does not change: an unchanged
// engine keeps its state, an unchanged manager keeps its dedup memory and queues.
func (d *Daemon) build(cfg *config.Config, prev *generation) (*generation, error) {
	g := &generation{cfg: cfg}
	if prev != nil && sameEvaluation(prev.cfg, cfg) {
		g.engine, g.engReg = prev.engine, prev.engReg
	} else {
		g.engReg = prometheus.NewRegistry()
		src, err := sources.NewPrometheus(cfg.Prometheus, d.logger, g.engReg)
		if err != nil {
			return nil, fmt.Errorf("prometheus source: %w", err)
		}
		g.engine = engine.New(cfg, src, d.logger, engine.NewMetrics(g.engReg))
		g.engine.ReadStartsBack()
		g.engine.CheapReplay()
	}
	if prev != nil && reflect.DeepEqual(prev.cfg.Receivers, cfg.Receivers) && reflect.DeepEqual(prev.cfg.Routes, cfg.Routes) &&
		reflect.DeepEqual(prev.cfg.Global, cfg.Global) {
		g.manager, g.mgrReg = prev.manager, prev.mgrReg
	} else {
		g.mgrReg = prometheus.NewRegistry()
		m, err := alerts.NewManager(cfg.Global, cfg.Receivers, cfg.Routes, d.logger, g.mgrReg)
		if err != nil {
			return nil, fmt.Errorf("receivers: %w", err)
		}
		g.manager = m
	}
	return g, nil
}

// sameEvaluation reports whether two configurations evaluate identically.
func sameEvaluation(a, b *config.Config) bool {
	return reflect.DeepEqual(a.Global, b.Global) && reflect.DeepEqual(a.Prometheus, b.Prometheus) && reflect.DeepEqual(a.Rules, b.Rules)
}

// Reload loads the configuration file again. A bad file changes nothing and is reported.
func (d *Daemon) Reload() error {
	cfg, err := LoadConfig(d.opts.ConfigFile, d.opts.PrometheusURL, d.opts.StoragePath)
	if err == nil {
		var gen *generation
		prev := d.current()
		gen, err = d.build(cfg, prev)
		if err == nil {
			if prev.engine != gen.engine {
				gen.engine.Carry(prev.engine.Active()) // a changed rule keeps its open episodes' starts
			}
			d.mu.Lock()
			d.cur = gen
			d.mu.Unlock()
			if prev.manager != gen.manager {
				// The old receivers finish in the background: a receiver that is down must not
				// hold up the reload (nor the evaluation loop that runs it).
				go func() {
					ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
					defer cancel()
					prev.manager.Stop(ctx)
				}()
			}
		}
	}
	if err != nil {
		d.reloadOK.Set(0)
		d.logger.Error("reload failed; keeping the running configuration", "err", err)
		return err
	}
	d.reloadOK.Set(1)
	d.reloadSuccess.SetToCurrentTime()
	d.logger.Info("configuration reloaded", "file", d.opts.ConfigFile)
	return nil
}

// Run evaluates until ctx is done, then delivers what is pending and returns. The listeners are
// bound before anything else, so a taken port fails at once rather than after loading history.
func (d *Daemon) Run(ctx context.Context) error {
	srv := &http.Server{Handler: d.handler(), ReadHeaderTimeout: 10 * time.Second}
	webErr := make(chan error, 1)
	if d.opts.Web != nil {
		serve, err := listen(d.opts.Web)
		if err != nil {
			return fmt.Errorf("web server: %w", err)
		}
		go func() { webErr <- serve(srv, d.opts.Web, d.logger) }()
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()

	timer := time.NewTimer(0)
	defer timer.Stop()
	backoff := time.Second
	for {
		select {
		case <-ctx.Done():
			return d.shutdown()
		case err := <-webErr:
			if err != nil && !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("web server: %w", err)
			}
		case <-d.opts.Reload:
			_ = d.Reload()
		case done := <-d.reloadRequest:
			done <- d.Reload()
		case <-timer.C:
			gen := d.current()
			interval := time.Duration(gen.cfg.Global.EvaluationInterval)
			if err := d.evaluate(ctx, gen); err != nil {
				if ctx.Err() != nil {
					continue
				}
				d.logger.Error("loading history failed; not ready, retrying", "err", err, "in", backoff)
				timer.Reset(backoff + rand.N(backoff/2+1))
				backoff = min(2*backoff, interval)
				continue
			}
			backoff = time.Second
			timer.Reset(untilNextStep(d.opts.Now(), interval, time.Duration(gen.cfg.Global.EvaluationDelay)))
		}
	}
}

// untilNextStep waits for the next aligned step plus the evaluation delay.
func untilNextStep(now time.Time, interval, delay time.Duration) time.Duration {
	next := engine.Align(now.Add(-delay), interval).Add(interval).Add(delay)
	return next.Sub(now)
}

func (d *Daemon) evaluate(ctx context.Context, gen *generation) error {
	at := d.opts.Now().Add(-time.Duration(gen.cfg.Global.EvaluationDelay))
	var events []detector.Event
	var err error
	if !gen.engine.Bootstrapped() && !d.stateTried {
		d.stateTried = true
		d.loadState(gen.engine, at)
	}
	if !gen.engine.Bootstrapped() {
		began := time.Now()
		if events, err = gen.engine.Bootstrap(ctx, at); err != nil {
			return err
		}
		d.logger.Info("history loaded; evaluating", "took", time.Since(began).Round(time.Millisecond), "rules", len(gen.cfg.Rules),
			"active_episodes", len(gen.engine.Active()))
		// The start-up's answers are garbage now, and the heap that held them would stay
		// mapped until the GC's scavenger returns it, minutes later: give it back at once.
		debug.FreeOSMemory()
	} else if events, err = gen.engine.Advance(ctx, at); err != nil {
		return err
	}
	for _, ev := range events {
		state := "fired"
		switch {
		case ev.Resolved:
			state = "resolved"
		case ev.Updated:
			state = "updated"
		}
		d.logger.Info("episode "+state, "kind", ev.Episode.Kind, "rule", ev.Episode.Rule,
			"group", detector.GroupString(ev.Episode.Labels), "start", ev.Episode.Start, "summary", ev.Episode.Summary)
	}
	out := gen.engine.Alerts()
	for _, a := range out {
		d.illustrate(gen, a)
	}
	gen.manager.Update(d.opts.Now(), out)
	return nil
}

// illustrate gives an episode's alert its chart (drawn only if a receiver shows it) and, with
// --web.external-url, a link to its group's page.
func (d *Daemon) illustrate(gen *generation, a *alerts.Alert) {
	rule := a.Labels["rule"]
	var groupBy []string
	for _, r := range gen.cfg.Rules {
		if r.Name == rule {
			groupBy = r.GroupBy
		}
	}
	if groupBy == nil { // the blind meta-alert, which has no group
		return
	}
	labels := make(map[string]string, len(groupBy))
	for _, l := range groupBy {
		labels[l] = a.Labels[l]
	}
	eng := gen.engine
	a.Chart = func(ctx context.Context) ([]byte, error) {
		c, err := eng.Chart(ctx, rule, labels, chart.Span, d.opts.Now())
		if err != nil {
			return nil, err
		}
		return chart.Render(c, "png", 8*vg.Inch)
	}
	if d.opts.ExternalURL != "" {
		a.Annotations["emergentd_url"] = strings.TrimRight(d.opts.ExternalURL, "/") + statuspage.GroupPath(rule, labels)
	}
}

func (d *Daemon) shutdown() error {
	gen := d.current()
	d.saveState(gen.engine)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	gen.manager.Stop(ctx)
	d.logger.Info("stopped; pending notifications delivered or timed out")
	return nil
}

// listen binds every TCP listen address now and returns what serves on them. Systemd socket
// activation and vsock addresses are left to exporter-toolkit, which binds as it serves.
func listen(flags *web.FlagConfig) (func(*http.Server, *web.FlagConfig, *slog.Logger) error, error) {
	if flags.WebSystemdSocket != nil && *flags.WebSystemdSocket {
		return web.ListenAndServe, nil
	}
	var listeners []net.Listener
	closeAll := func() {
		for _, l := range listeners {
			l.Close()
		}
	}
	for _, addr := range *flags.WebListenAddresses {
		if strings.HasPrefix(addr, "vsock://") {
			closeAll()
			return web.ListenAndServe, nil
		}
		l, err := net.Listen("tcp", addr)
		if err != nil {
			closeAll()
			return nil, err
		}
		listeners = append(listeners, l)
	}
	return func(srv *http.Server, flags *web.FlagConfig, logger *slog.Logger) error {
		return web.ServeMultiple(listeners, srv, flags, logger)
	}, nil
}
