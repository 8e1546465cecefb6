package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"github.com/emergent-sh/emergent/internal/syncbuf"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emergent-sh/emergent/config"
	"github.com/emergent-sh/emergent/daemon"
	"github.com/emergent-sh/emergent/internal/stack"
	"github.com/prometheus/client_golang/api"
	v1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"
)

// Timing of the whole stack. Prometheus and VictoriaMetrics scrape every second; emergentd
// evaluates every two seconds, two seconds behind (every scrape of a step has landed by then).
const (
	scrapeInterval = time.Second
	evalInterval   = 2 * time.Second
	evalDelay      = 2 * time.Second
	// rateWindow replaces the shipped [2m] and [5m] windows; tokenFor replaces the token
	// rule's for = "5m". The shipped rule keeps for ≥ window (5m ≥ 2m), so one legitimate
	// token refresh, which lifts rate() for exactly one window, never lasts `for`; the test
	// keeps that invariant.
	rateWindow = 20 * time.Second
	tokenFor   = 20 * time.Second
	// vmLatencyOffset is VictoriaMetrics' default -search.latencyOffset, set explicitly: it
	// hides the newest 30 s, so the daemon reading VictoriaMetrics evaluates that far behind.
	vmLatencyOffset = stack.DefaultVMLatencyOffset
	vmEvalDelay     = vmLatencyOffset + 2*evalInterval
	// warmUpData is the healthy history gathered before the onsets. Without past days the
	// seasonal inbound baseline is the median of the last twelve baseline steps (10 s here);
	// when the idle scenario fires, about twelve intervals after onset, most of those steps
	// must still be from before it, or "idle" is measured against the idle level itself.
	warmUpData = 40 * time.Second
	// uploadsPerSecond is media's upload rate from onset: three flushes within six seconds.
	uploadsPerSecond = 0.5
	// labDuration bounds every lab's load; the test stops them long before.
	labDuration = 10 * time.Minute
	// settleFor replaces a rule's settle (how long after a scaling event, a deploy or a
	// restart raised work may last without paging), if the shipped rules.toml sets one: two
	// rate windows, so each new instance's cache refreshes once and that refresh leaves the
	// window (the suite scales out at once; a real rollout takes minutes).
	settleFor = 2 * rateWindow
	// scaledFrom and scaledTo are the instances inventory and ledger run before and after
	// onset, of scaledTo listeners each.
	scaledFrom, scaledTo = 2, 6
)

// service is one service of the lab, with its own Redis (redis_exporter's target carries the
// service label, so a Redis belongs to one service) and its own lab process.
type service struct {
	name      string
	instances int // listeners, each scraped as a target (the first active ones run an instance)
	labArgs   []string

	redisDir string
	redis    *stack.Process
	exporter *stack.Process
	lab      *stack.Process
	targets  []string // the instances' host:port, each scraped as a target
}

// world is the running stack.
type world struct {
	t      *testing.T
	dir    string
	labBin string

	am, prom, vm *stack.Process
	services     map[string]*service
	order        []string

	promAPI v1.API
	watcher *amWatcher
	slack   *slackFake
	hook    *webhookSink
	proxies map[string]*amProxy
	daemons map[string]*daemonRun

	mu    sync.Mutex
	procs []*stack.Process // everything started, stopped by PID at the end
}

// services of the suite: each scenario is a service of its own, so they run at the same time
// without touching each other's groups.
func suiteServices() []*service {
	common := []string{"--duration=" + labDuration.String(), "--health-interval=3s", "--keys=2000",
		"--token.expiry=60s", "--token.safety-margin=10s"}
	svc := func(name string, instances int, args ...string) *service {
		return &service{name: name, instances: instances, labArgs: append(append([]string{}, common...), args...)}
	}
	return []*service{
		// Fragmented token cache at onset; switched back to shared later (resolve).
		svc("checkout", 2, "--mode=shared", "--rate=4", "--upload-rate=0.1"),
		// Fragmented and idle at onset: only the prober calls, and the instances still mint.
		svc("reports", 2, "--mode=shared", "--rate=30", "--upload-rate=0.1"),
		// The cache library is installed (flushstorm); uploads start at onset, as when the
		// seed's image scraper launched.
		svc("media", 1, "--mode=flushstorm", "--rate=3", "--upload-rate=0"),
		// Controls: nothing may fire on these.
		svc("search", 2, "--mode=shared", "--rate=4", "--upload-rate=0.1"),
		svc("catalog", 2, "--mode=shared", "--rate=2", "--upload-rate=0.1", "--surge.factor=5", "--surge.for=40s"),
		svc("files", 1, "--mode=flushfixed", "--rate=3", "--upload-rate=0.5"),
		svc("billing", 1, "--mode=shared", "--rate=3", "--upload-rate=0.1"),
		svc("sessions", 1, "--mode=shared", "--rate=3", "--upload-rate=0.1"),
		// Per-pod state: a per-instance token cache against a provider that keeps two tokens
		// per client is healthy on two instances; at onset the service scales out to six, whose
		// caches revoke each other's tokens. Inbound stays flat; work grows with the replicas.
		svc("inventory", scaledTo, "--active="+strconv.Itoa(scaledFrom), "--mode=fragmented", "--token.max-active=2",
			"--rate=4", "--upload-rate=0.1"),
		// Control: the same scale-out with the token shared in Redis. Nothing may fire.
		svc("ledger", scaledTo, "--active="+strconv.Itoa(scaledFrom), "--mode=shared", "--token.max-active=2",
			"--rate=4", "--upload-rate=0.1"),
	}
}

// track registers a process to stop at the end.
func (w *world) track(p *stack.Process) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.procs = append(w.procs, p)
}

// parallel runs fns at once and fails the test with every error.
func parallel(t *testing.T, fns ...func() error) {
	t.Helper()
	errs := make([]error, len(fns))
	var wg sync.WaitGroup
	for i, fn := range fns {
		wg.Go(func() { errs[i] = fn() })
	}
	wg.Wait()
	failed := false
	for _, err := range errs {
		if err != nil {
			t.Error(err)
			failed = true
		}
	}
	if failed {
		t.FailNow()
	}
}

// startWorld builds the lab, starts every component and the daemons, and returns when every
// group is known to emergentd and Prometheus holds a rate window of data for every target.
func startWorld(t *testing.T) *world {
	ctx := context.Background()
	w := &world{t: t, dir: t.TempDir(), services: map[string]*service{}, proxies: map[string]*amProxy{}, daemons: map[string]*daemonRun{}}
	t.Cleanup(w.stop)
	svcs := suiteServices()
	for _, s := range svcs {
		w.services[s.name] = s
		w.order = append(w.order, s.name)
	}

	// The lab builds while Redis, the exporters and Alertmanager start.
	fns := []func() error{w.buildLab, func() error {
		var err error
		w.am, err = stack.StartAlertmanager(ctx, stack.AlertmanagerOptions{Dir: filepath.Join(w.dir, "alertmanager")})
		if err == nil {
			w.track(w.am)
		}
		return err
	}}
	for _, s := range svcs {
		fns = append(fns, func() error { return w.startRedis(ctx, s) })
	}
	parallel(t, fns...)

	fns = nil
	for _, s := range svcs {
		fns = append(fns, func() error { return w.startLab(ctx, s) })
	}
	parallel(t, fns...)

	scrape := w.scrapeConfigs()
	parallel(t, func() error {
		var err error
		w.prom, err = stack.StartPrometheus(ctx, stack.PrometheusOptions{
			Dir: filepath.Join(w.dir, "prometheus"), ScrapeConfigsYAML: scrape, ScrapeInterval: scrapeInterval,
		})
		if err == nil {
			w.track(w.prom)
		}
		return err
	}, func() error {
		var err error
		w.vm, err = stack.StartVictoriaMetrics(ctx, stack.VictoriaMetricsOptions{
			Dir: filepath.Join(w.dir, "victoria-metrics"), ScrapeConfigsYAML: scrape, ScrapeInterval: scrapeInterval,
			LatencyOffset: vmLatencyOffset,
		})
		if err == nil {
			w.track(w.vm)
		}
		return err
	})
	client, err := api.NewClient(api.Config{Address: w.prom.URL})
	if err != nil {
		t.Fatal(err)
	}
	w.promAPI = v1.NewAPI(client)

	wctx, cancel := context.WithCancel(ctx)
	t.Cleanup(cancel)
	w.watcher = newAMWatcher(w.am.URL)
	go w.watcher.run(wctx)
	w.slack = newSlackFake(t)
	w.hook = newWebhookSink(t)
	for _, name := range []string{"primary", "replica", "victoriametrics"} {
		w.proxies[name] = newAMProxy(t, name, w.am.URL)
	}
	w.startDaemon("primary", daemonConfig{promURL: w.prom.URL, delay: evalDelay, slack: true, webhook: true})
	w.startDaemon("victoriametrics", daemonConfig{promURL: w.vm.URL, delay: vmEvalDelay, source: "victoriametrics"})
	return w
}

// buildLab compiles cmd/emergent-lab (without -race: it is the system under observation,
// not under test, and a dozen raced processes would slow the machine down).
func (w *world) buildLab() error {
	goBin, err := exec.LookPath("go")
	if err != nil {
		return fmt.Errorf("building emergent-lab: the go command is not on PATH: %w", err)
	}
	w.labBin = filepath.Join(w.dir, "emergent-lab")
	cmd := exec.Command(goBin, "build", "-o", w.labBin, "github.com/emergent-sh/emergent/cmd/emergent-lab")
	cmd.Dir = ".."
	began := time.Now()
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./cmd/emergent-lab: %w\n%s", err, out)
	}
	w.t.Logf("built emergent-lab in %s", time.Since(began).Round(time.Millisecond))
	return nil
}

func (w *world) startRedis(ctx context.Context, s *service) error {
	s.redisDir = filepath.Join(w.dir, "redis-"+s.name)
	var err error
	if s.redis, err = stack.StartRedis(ctx, stack.RedisOptions{Dir: s.redisDir}); err != nil {
		return fmt.Errorf("%s: %w", s.name, err)
	}
	w.track(s.redis)
	if s.exporter, err = stack.StartRedisExporter(ctx, stack.RedisExporterOptions{
		Dir: filepath.Join(w.dir, "redis_exporter-"+s.name), RedisAddr: s.redis.Addr,
	}); err != nil {
		return fmt.Errorf("%s: %w", s.name, err)
	}
	w.track(s.exporter)
	return nil
}

// restartRedis stops a service's Redis by its PID and starts a fresh one (no persistence: it
// comes back empty) on the same address, where the lab and the exporter reconnect.
func (w *world) restartRedis(ctx context.Context, s *service) error {
	addr := s.redis.Addr
	s.redis.Stop()
	p, err := stack.StartRedis(ctx, stack.RedisOptions{Dir: s.redisDir, Addr: addr})
	if err != nil {
		return fmt.Errorf("%s: restarting Redis on %s: %w", s.name, addr, err)
	}
	s.redis = p
	w.track(p)
	return nil
}

func (w *world) startLab(ctx context.Context, s *service) error {
	dir := filepath.Join(w.dir, "lab-"+s.name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	var err error
	s.lab, err = stack.Start(ctx, stack.Spec{
		Name: "lab-" + s.name, Binary: w.labBin, Package: "(built from ./cmd/emergent-lab)", Dir: dir,
		Args: func(addr string) []string {
			return append([]string{"run", "--web.listen-address=" + addr, "--service=" + s.name,
				"--redis.addr=" + s.redis.Addr, "--instances=" + strconv.Itoa(s.instances)}, s.labArgs...)
		},
		Ready: stack.HTTPReady("/-/ready"),
	})
	if err != nil {
		return fmt.Errorf("%s: %w", s.name, err)
	}
	w.track(s.lab)
	var list struct {
		Instances []string `json:"instances"`
	}
	if err := getJSON(s.lab.URL+"/api/v1/instances", &list); err != nil {
		return fmt.Errorf("%s: %w", s.name, err)
	}
	if len(list.Instances) != s.instances {
		return fmt.Errorf("%s: lab lists %d instances, want %d", s.name, len(list.Instances), s.instances)
	}
	s.targets = list.Instances // active or not: an inactive one answers 503 (up=0, no series)
	return nil
}

// scrapeConfigs is the scrape_configs both Prometheus and VictoriaMetrics use: every lab
// instance listener, active or not, as a target of its own (Prometheus's instance label, its
// address, then names it) and every exporter, labelled with the service the rules group by.
func (w *world) scrapeConfigs() string {
	var b strings.Builder
	job := func(name string, targets func(*service) []string) {
		fmt.Fprintf(&b, "  - job_name: %s\n    scrape_interval: %s\n    scrape_timeout: %s\n    static_configs:\n",
			name, model.Duration(scrapeInterval), model.Duration(scrapeInterval))
		for _, n := range w.order {
			s := w.services[n]
			quoted := make([]string, 0)
			for _, tgt := range targets(s) {
				quoted = append(quoted, strconv.Quote(tgt))
			}
			fmt.Fprintf(&b, "      - targets: [%s]\n        labels: {service: %q}\n", strings.Join(quoted, ", "), s.name)
		}
	}
	job("lab", func(s *service) []string { return s.targets })
	job("redis", func(s *service) []string { return []string{s.exporter.Addr} })
	return b.String()
}

// stop stops the daemons, then every process by the PID it was started with, all at once.
func (w *world) stop() {
	for _, d := range w.daemons {
		d.stop()
	}
	w.mu.Lock()
	procs := append([]*stack.Process(nil), w.procs...)
	w.mu.Unlock()
	began := time.Now()
	var wg sync.WaitGroup
	for _, p := range procs {
		wg.Go(p.Stop)
	}
	wg.Wait()
	if w.t.Failed() {
		for _, p := range procs {
			log := p.Log()
			if len(log) > 3000 {
				log = "…" + log[len(log)-3000:]
			}
			w.t.Logf("---- %s (pid %d, %s) log tail:\n%s", p.Name, p.PID(), p.Addr, log)
		}
		for name, d := range w.daemons {
			w.t.Logf("---- emergentd %s log:\n%s", name, w.redact(tail(d.logs, 12000)))
		}
	}
	w.t.Logf("stopped %d processes in %s", len(procs), time.Since(began).Round(time.Millisecond))
}

// redact masks the webhook URL's secret in text the suite prints.
func (w *world) redact(text string) string {
	if w.hook == nil {
		return text
	}
	return strings.ReplaceAll(text, w.hook.secret(), "<webhook secret>")
}

func getJSON(u string, v any) error {
	resp, err := http.Get(u)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("GET %s: %s: %s", u, resp.Status, body)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// setMode switches a lab's mode and load (POST /mode) and returns when every instance runs it.
func (w *world) setMode(s *service, params url.Values) error {
	resp, err := http.PostForm(s.lab.URL+"/mode", params)
	if err != nil {
		return fmt.Errorf("%s: POST /mode: %w", s.name, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: POST /mode %s: %s: %s", s.name, params.Encode(), resp.Status, body)
	}
	return nil
}

// query runs an instant PromQL query against Prometheus and returns the one value it yields.
func (w *world) query(q string) (float64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	v, _, _, err := w.promAPI.Query(ctx, q, time.Now())
	if err != nil {
		return 0, fmt.Errorf("%s: %w", q, err)
	}
	vec, ok := v.(model.Vector)
	if !ok || len(vec) != 1 {
		return 0, fmt.Errorf("%s: want one sample, got %v", q, v)
	}
	return float64(vec[0].Value), nil
}

// daemonConfig says how one emergentd differs from the shipped rules.toml.
type daemonConfig struct {
	promURL string
	delay   time.Duration
	slack   bool
	webhook bool   // the webhook receiver, to the suite's webhookSink (its URL a secret, from a file)
	source  string // extra external label, so its alerts are told apart in Alertmanager
}

const (
	slackToken   = "xoxb-e2e-not-a-secret"
	slackChannel = "C0E2E"
)

// rulesText derives a daemon's rules from the shipped rules.toml: test timings and rate
// windows (the rules' logic untouched), dc's Prometheus URL and delay, no receivers.
func (w *world) rulesText(dc daemonConfig) string {
	shipped, err := os.ReadFile(filepath.Join("..", "rules.toml"))
	if err != nil {
		w.t.Fatal(err)
	}
	text, err := testRules(string(shipped), dc)
	if err != nil {
		w.t.Fatal(err)
	}
	return text
}

// testRules rewrites the shipped rules.toml text as rulesText describes.
func testRules(text string, dc daemonConfig) (string, error) {
	external := `external_labels = { cluster = "e2e" }`
	if dc.source != "" {
		external = fmt.Sprintf(`external_labels = { cluster = "e2e", source = %q }`, dc.source)
	}
	for _, r := range []struct {
		old, new string
		all      bool
	}{
		{old: `evaluation_interval = "30s"`, new: fmt.Sprintf("evaluation_interval = %q", model.Duration(evalInterval))},
		{old: `evaluation_delay = "15s"`, new: fmt.Sprintf("evaluation_delay = %q", model.Duration(dc.delay))},
		{old: `history = "7d"`, new: `history = "10m"`},
		{old: `baseline_step = "15m"`, new: `baseline_step = "10s"`},
		{old: `replay = "6h"`, new: `replay = "10m"`},
		// Short, so a detector that cannot see its data raises the meta-alert within the run.
		{old: `blind_after = "10m"`, new: `blind_after = "30s"`},
		{old: `url = "http://127.0.0.1:9090"`, new: fmt.Sprintf("url = %q", dc.promURL)},
		{old: `# external_labels = { cluster = "eu-1" }`, new: external},
		// Every other range window (a query the rules gain, e.g. the replicas or restarts
		// query) is rewritten below; these two must be there.
		{old: "[2m]", new: "[" + model.Duration(rateWindow).String() + "]", all: true},
		{old: "[5m]", new: "[" + model.Duration(rateWindow).String() + "]", all: true},
		{old: "\nfor = \"5m\"\n", new: fmt.Sprintf("\nfor = %q\n", model.Duration(tokenFor))},
		{old: "\nresolve_for = \"5m\"\n", new: "\nresolve_for = \"10s\"\n"},
		// A reset held for the shipped hour would hold the suite's every control: the suite's
		// refill is its rate window, as the [1h] ranges that held resets before it became.
		{old: `cache_refill = "1h"`, new: fmt.Sprintf("cache_refill = %q", model.Duration(rateWindow))},
	} {
		if !strings.Contains(text, r.old) {
			return "", fmt.Errorf("rules.toml no longer contains %q; update the e2e configuration", r.old)
		}
		if r.all {
			text = strings.ReplaceAll(text, r.old, r.new)
		} else {
			text = strings.Replace(text, r.old, r.new, 1)
		}
	}
	// Tolerant of what the rules gain while the suite stays as it is: any range window (a
	// replicas = 'sum by (service, instance) (rate(http_requests_total[2m]))' line has one) is
	// the test's, and a settle, where set, the test's settleFor (a deploy_settle twice that).
	text = rangeWindow.ReplaceAllString(text, "["+model.Duration(rateWindow).String()+"]")
	text = settleLine.ReplaceAllString(text, fmt.Sprintf("${1}settle = %q", model.Duration(settleFor)))
	text = deploySettleLine.ReplaceAllString(text, fmt.Sprintf("${1}deploy_settle = %q", model.Duration(2*settleFor)))
	// The shipped hour-long average would hold every incident of a minutes-long suite back: the
	// suite's is its rate window, as its other windows are.
	text = averageOverLine.ReplaceAllString(text, fmt.Sprintf("${1}average_over = %q", model.Duration(rateWindow)))
	return text, nil
}

var (
	// rangeWindow is a PromQL range selector's window: [2m], [1h30m]; not a subquery's [10m:1m].
	rangeWindow = regexp.MustCompile(`\[(?:[0-9]+(?:ms|[smhdwy]))+\]`)
	// averageOverLine is a rule's average_over key.
	averageOverLine = regexp.MustCompile(`(?m)^([ \t]*)average_over[ \t]*=[ \t]*"[^"]*"`)
	// settleLine is a rule's settle key.
	settleLine = regexp.MustCompile(`(?m)^([ \t]*)settle[ \t]*=[ \t]*"[^"]*"`)
	// deploySettleLine is a rule's deploy_settle key: twice the test's settle, as the shipped
	// rules have it.
	deploySettleLine = regexp.MustCompile(`(?m)^([ \t]*)deploy_settle[ \t]*=[ \t]*"[^"]*"`)
)

// settleOf is the longest settle the rules' self-generated-traffic rules run with, as the
// daemon loads them (a rule that sets none gets the default).
func settleOf(rules string) (time.Duration, error) {
	cfg, err := config.Load([]byte(rules), "rules.toml")
	if err != nil {
		return 0, err
	}
	var longest time.Duration
	for _, r := range cfg.Rules {
		if r.Kind == config.KindSelfGenerated {
			longest = max(longest, time.Duration(r.Settle))
		}
	}
	return longest, nil
}

// writeConfig writes a daemon's configuration: rulesText plus the real receivers.
func (w *world) writeConfig(name string, dc daemonConfig, proxy *amProxy) string {
	t := w.t
	text := w.rulesText(dc) + fmt.Sprintf(`
[[receivers]]
name = "alertmanager"
type = "alertmanager"
urls = [%q]

[[routes]]
receiver = "alertmanager"
`, proxy.srv.URL)
	if dc.slack {
		text += fmt.Sprintf(`
[[receivers]]
name = "oncall-slack"
type = "slack"
token = %q
channel = %q
api_url = %q

[[routes]]
receiver = "oncall-slack"
kinds = ["self_generated_traffic", "flush_storm"]
`, slackToken, slackChannel, w.slack.apiURL())
	}
	if dc.webhook {
		// The URL is a secret: the daemon reads it from a file, as it would in production.
		secret := filepath.Join(w.dir, "webhook-url-"+name)
		if err := os.WriteFile(secret, []byte(w.hook.url()), 0o600); err != nil {
			t.Fatal(err)
		}
		text += fmt.Sprintf(`
[[receivers]]
name = %q
type = "webhook"
url_file = %q

[[routes]]
receiver = %q
kinds = ["self_generated_traffic", "flush_storm"]
`, hookReceiver, secret, hookReceiver)
	}
	path := filepath.Join(w.dir, "emergentd-"+name+".toml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// daemonRun is one emergentd running in-process (daemon.New + Run: the binary's code path).
type daemonRun struct {
	name    string
	started time.Time
	d       *daemon.Daemon
	web     *httptest.Server
	logs    *syncbuf.Buffer
	cancel  context.CancelFunc
	done    chan error
	once    sync.Once
}

func (w *world) startDaemon(name string, dc daemonConfig) *daemonRun {
	t := w.t
	cfg := w.writeConfig(name, dc, w.proxies[name])
	logs := &syncbuf.Buffer{}
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo})).With("daemon", name)
	d, err := daemon.New(daemon.Options{
		ConfigFile: cfg, StoragePath: filepath.Join(w.dir, "emergentd-"+name), Logger: logger,
	})
	if err != nil {
		t.Fatalf("emergentd %s: %v", name, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &daemonRun{name: name, started: time.Now(), d: d, web: httptest.NewServer(d.Handler()), logs: logs, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- d.Run(ctx) }()
	w.daemons[name] = r
	return r
}

func (r *daemonRun) stop() {
	r.once.Do(func() {
		r.cancel()
		select {
		case err := <-r.done:
			if err != nil {
				r.logs.Write([]byte("Run returned: " + err.Error() + "\n"))
			}
		case <-time.After(20 * time.Second):
			r.logs.Write([]byte("Run did not return within 20s of cancel\n"))
		}
		r.web.Close()
	})
}

// episode is an active episode as the daemon's /api/v1/episodes shows it: the explanation at
// the latest evaluated step.
type episode struct {
	Kind      string             `json:"kind"`
	Labels    map[string]string  `json:"labels"`
	Start     time.Time          `json:"start"`
	Summary   string             `json:"summary"`
	Diagnosis string             `json:"diagnosis"`
	Numbers   map[string]float64 `json:"numbers"`
}

// episode returns the daemon's active episode of kind for svc.
func (r *daemonRun) episode(kind, svc string) (episode, error) {
	var eps []episode
	if err := getJSON(r.web.URL+"/api/v1/episodes", &eps); err != nil {
		return episode{}, err
	}
	for _, ep := range eps {
		if ep.Kind == kind && ep.Labels["service"] == svc {
			return ep, nil
		}
	}
	return episode{}, fmt.Errorf("emergentd %s has no active %s episode for %s", r.name, kind, svc)
}

// groupStates reads emergent_group_state from the daemon's /metrics: rule/service → state.
func (r *daemonRun) groupStates() (map[string]float64, error) {
	resp, err := http.Get(r.web.URL + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	out := map[string]float64{}
	for _, line := range strings.Split(string(body), "\n") {
		if !strings.HasPrefix(line, "emergent_group_state{") {
			continue
		}
		labels, value, ok := strings.Cut(strings.TrimPrefix(line, "emergent_group_state{"), "} ")
		if !ok {
			continue
		}
		var rule, svc string
		for _, kv := range strings.Split(labels, ",") {
			k, v, _ := strings.Cut(kv, "=")
			v = strings.Trim(v, `"`)
			switch k {
			case "rule":
				rule = v
			case "service":
				svc = v
			}
		}
		f, err := strconv.ParseFloat(value, 64)
		if err == nil {
			out[rule+"/"+svc] = f
		}
	}
	return out, nil
}

// tail is the end of a log, at most n bytes.
func tail(logs *syncbuf.Buffer, n int) string {
	str := logs.String()
	if len(str) > n {
		return "…" + str[len(str)-n:]
	}
	return str
}

// TestRulesText needs no stack: the suite's rewrite of rules.toml loads, and stays right when
// the token rule gains a replicas query (or any other windowed query) or a settle.
func TestRulesText(t *testing.T) {
	shipped, err := os.ReadFile(filepath.Join("..", "rules.toml"))
	if err != nil {
		t.Fatal(err)
	}
	const replicas = `replicas = 'sum by (service, instance) (rate(http_requests_total[2m]))'`
	withLine := func(line string) func(string) string {
		return func(s string) string {
			if strings.Contains(s, line) {
				return s
			}
			return strings.Replace(s, "\ninstance_label = \"instance\"\n", "\ninstance_label = \"instance\"\n"+line+"\n", 1)
		}
	}
	window := "[" + model.Duration(rateWindow).String() + "]"
	for _, tc := range []struct {
		name string
		edit func(string) string
		want []string
		load bool
	}{
		{"shipped", func(s string) string { return s }, []string{fmt.Sprintf("\ndeploy_settle = %q\n", model.Duration(2*settleFor))}, true},
		{"replicas", withLine(replicas), []string{strings.Replace(replicas, "[2m]", window, 1)}, true},
		{"other window", withLine(`restarts = 'resets(redis_uptime_in_seconds[10m])'`), []string{"redis_uptime_in_seconds" + window}, false},
		{"settle", withLine(`settle = "5m"`), []string{fmt.Sprintf("\nsettle = %q\n", model.Duration(settleFor))}, true},
	} {
		in := tc.edit(string(shipped))
		out, err := testRules(in, daemonConfig{promURL: "http://127.0.0.1:9090", delay: evalDelay})
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if m := regexp.MustCompile(`\[[0-9]+[a-z]+\]`).FindAllString(out, -1); len(m) == 0 || slices.ContainsFunc(m, func(s string) bool { return s != window }) {
			t.Errorf("%s: range windows %v, want every one %s", tc.name, m, window)
		}
		for _, want := range tc.want {
			if !strings.Contains(out, want) {
				t.Errorf("%s: rewritten rules lack %q", tc.name, want)
			}
		}
		if !tc.load {
			continue
		}
		settle, err := settleOf(out)
		if err != nil {
			t.Errorf("%s: the rewritten rules do not load: %v", tc.name, err)
		} else if settleLine.MatchString(in) && settle != settleFor {
			t.Errorf("%s: the rules settle %s, want the test's %s", tc.name, settle, settleFor)
		}
	}
}
