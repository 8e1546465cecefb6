// Command emergentd watches Prometheus for traffic a system generates by itself and for cache
// flush storms, explains them, and alerts Slack and Alertmanager.
package main

import (
	"bytes"
	"context"
	_ "embed"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/KimMachineGun/automemlimit/memlimit"
	"github.com/alecthomas/kingpin/v2"
	"github.com/emergent-sh/emergent/config"
	"github.com/emergent-sh/emergent/daemon"
	"github.com/emergent-sh/emergent/engine"
	"github.com/emergent-sh/emergent/sources"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/promslog"
	promslogflag "github.com/prometheus/common/promslog/flag"
	"github.com/prometheus/common/version"
	"github.com/prometheus/exporter-toolkit/web/kingpinflag"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	app := kingpin.New("emergentd", "Detects self-generated traffic and cache flush storms in Prometheus metrics, explains them, and alerts Slack and Alertmanager.")
	app.Version(version.Print("emergentd"))
	app.HelpFlag.Short('h')
	configFile := app.Flag("config.file", "emergentd configuration file (rules, receivers, routes).").Default("rules.toml").String()
	promURL := app.Flag("prometheus.url", "Prometheus (or Prometheus-compatible API) URL; overrides prometheus.url in the file. "+
		"In a container, 127.0.0.1 is the container itself: set this (or EMERGENT_PROMETHEUS_URL).").Envar("EMERGENT_PROMETHEUS_URL").String()
	logConfig := &promslog.Config{}
	promslogflag.AddFlags(app, logConfig)

	// The daemon's flags are the application's, not only the run command's, so the top-level
	// --help lists them: run is the default command and most users never type it.
	app.Command("run", "Run the daemon (default).").Default()
	webFlags := kingpinflag.AddFlags(app, ":9799")
	storage := app.Flag("storage.path", "Directory for optional local state: Slack message ids, so a restart never posts an episode twice, and the evaluation state saved at shutdown, so a restart reads no history back. Empty disables it.").Default("data").String()
	enableReload := app.Flag("web.enable-reload", "Allow POST /-/reload (use --no-web.enable-reload to disable).").Default("true").Bool()
	memRatio := app.Flag("auto-gomemlimit.ratio", "Set GOMEMLIMIT to this fraction of the container's (cgroup) memory limit, as Prometheus does, so the garbage collector works harder before the kernel kills the process; 0 disables. GOMEMLIMIT in the environment wins.").Default(fmt.Sprint(daemon.MemoryLimitRatio)).Float64()
	gogc := app.Flag("gogc", "The garbage collector's target percentage (GOGC): how far the heap may grow past the live heap between collections. Go's default is 100; emergentd's heap is nearly all long-lived state, so it holds the growth to half. GOGC in the environment wins.").Default(fmt.Sprint(daemon.GCPercent)).Int()
	externalURL := app.Flag("web.external-url", "The URL users reach emergentd at (behind a reverse proxy); its path prefixes every page and link. Probes stay at /-/.").String()

	checkCmd := app.Command("check", "Validate the configuration; exit 1 on any mistake.")
	checkQuery := checkCmd.Flag("query", "Also run every query once against Prometheus.").Bool()

	btCmd := app.Command("backtest", "Evaluate a past range and print one JSON object per anomaly episode.")
	btFrom := btCmd.Flag("from", "Start of the range (RFC3339).").Required().String()
	btTo := btCmd.Flag("to", "End of the range (RFC3339).").Required().String()
	btRecording := btCmd.Flag("recording", "Read series from a recording file instead of Prometheus.").String()

	recCmd := app.Command("record", "Save what the rules query over a range from Prometheus into a file, for replay.")
	recFrom := recCmd.Flag("from", "Start of the range to replay later (RFC3339); history before it is saved too.").Required().String()
	recTo := recCmd.Flag("to", "End of the range (RFC3339).").Required().String()
	recOut := recCmd.Flag("out", "Output file (gzip-compressed JSON).").Default("emergent.rec.json.gz").String()

	replayCmd := app.Command("replay", "Run the evaluation offline over a recording and print each alert as it would be delivered. "+
		"Without FILE, replays the recording shipped with emergentd (fragmented token cache, flush storm, and a legitimate surge).")
	replayFile := replayCmd.Arg("file", "Recording made by `emergentd record`.").String()
	healthCmd := app.Command("healthcheck", "Exit 0 if a running emergentd answers its health endpoint (for a container HEALTHCHECK: the image has no curl).")
	healthURL := healthCmd.Flag("url", "Health endpoint to probe.").Default("http://127.0.0.1:9799/-/healthy").String()
	configSet := false
	app.GetFlag("config.file").IsSetByUser(&configSet)

	cmd, err := app.Parse(args)
	if err != nil {
		fmt.Fprintf(os.Stderr, "emergentd: %v (try --help)\n", err)
		return 2
	}
	logger := promslog.New(logConfig)

	switch cmd {
	case checkCmd.FullCommand():
		return check(*configFile, *promURL, *checkQuery)
	case btCmd.FullCommand():
		return backtest(*configFile, *promURL, *btRecording, *btFrom, *btTo, logger)
	case recCmd.FullCommand():
		return record(*configFile, *promURL, *recFrom, *recTo, *recOut, logger)
	case healthCmd.FullCommand():
		return healthcheck(*healthURL)
	case replayCmd.FullCommand():
		cfgFile := ""
		if configSet {
			cfgFile = *configFile
		}
		return replay(*replayFile, cfgFile, logger)
	}

	logger.Info("starting emergentd", "version", version.Info(), "config", *configFile)
	if *gogc < 1 {
		fmt.Fprintf(os.Stderr, "emergentd: --gogc must be at least 1, got %d\n", *gogc)
		return 2
	}
	daemon.SetGCPercent(*gogc, logger)
	if *memRatio > 0 {
		if _, err := daemon.SetMemoryLimit(*memRatio, memlimit.FromCgroup, logger); err != nil {
			logger.Warn("GOMEMLIMIT not set from the cgroup memory limit", "err", err)
		}
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	reload := make(chan struct{})
	go func() {
		for range hup {
			reload <- struct{}{}
		}
	}()
	d, err := daemon.New(daemon.Options{
		ConfigFile: *configFile, PrometheusURL: *promURL, StoragePath: *storage,
		Web: webFlags, EnableReload: *enableReload, ExternalURL: *externalURL, Logger: logger, Reload: reload,
	})
	if err != nil {
		logger.Error("cannot start", "err", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := d.Run(ctx); err != nil {
		logger.Error("stopped with error", "err", err)
		return 1
	}
	return 0
}

func check(file, promURL string, query bool) int {
	fmt.Printf("Checking %s\n", file)
	cfg, err := config.LoadFile(file)
	if err != nil {
		fmt.Printf("  FAILED:\n%v\n", err)
		return 1
	}
	fmt.Printf("  SUCCESS: %d rules, %d receivers, %d routes\n", len(cfg.Rules), len(cfg.Receivers), len(cfg.Routes))
	if !query {
		return 0
	}
	if promURL != "" {
		cfg.Prometheus.URL = promURL
	}
	if cfg.Prometheus.URL == "" {
		fmt.Println("  FAILED: --query needs prometheus.url or --prometheus.url")
		return 1
	}
	src, err := sources.NewPrometheus(cfg.Prometheus, promslog.NewNopLogger(), prometheus.NewRegistry())
	if err != nil {
		fmt.Printf("  FAILED: %v\n", err)
		return 1
	}
	failed := 0
	for _, c := range daemon.CheckQueries(context.Background(), cfg, src) {
		what := fmt.Sprintf("rule %q %s", c.Rule, c.Field)
		switch {
		case c.Err != nil:
			failed++
			fmt.Printf("  FAILED: %s: %v\n", what, c.Err)
		case c.Problem != "":
			failed++
			fmt.Printf("  FAILED: %s: %s\n    query: %s\n", what, c.Problem, c.Query)
		case c.Note != "":
			fmt.Printf("  OK: %s: %d series, %d groups; %s\n", what, c.Series, c.Groups, c.Note)
		default:
			fmt.Printf("  OK: %s: %d series, %d groups\n", what, c.Series, c.Groups)
		}
	}
	if failed > 0 {
		fmt.Printf("  %d queries failed or return nothing the rules can use\n", failed)
		return 1
	}
	return 0
}

// healthcheckTimeout is under Docker's default HEALTHCHECK timeout (30s), and far above an
// answer that needs no I/O.
const healthcheckTimeout = 5 * time.Second

func healthcheck(url string) int {
	client := http.Client{Timeout: healthcheckTimeout}
	resp, err := client.Get(url)
	if err != nil {
		fmt.Fprintf(os.Stderr, "emergentd healthcheck: %v\n", err)
		return 1
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		fmt.Fprintf(os.Stderr, "emergentd healthcheck: %s answered %s\n", url, resp.Status)
		return 1
	}
	return 0
}

func parseRange(fromS, toS string) (time.Time, time.Time, error) {
	from, err1 := time.Parse(time.RFC3339, fromS)
	to, err2 := time.Parse(time.RFC3339, toS)
	if err1 != nil || err2 != nil {
		return from, to, fmt.Errorf("--from and --to must be RFC3339 (e.g. 2026-11-01T00:00:00Z)")
	}
	if !from.Before(to) {
		return from, to, fmt.Errorf("--from must be before --to")
	}
	return from, to, nil
}

func record(file, promURL, fromS, toS, out string, logger *slog.Logger) int {
	from, to, err := parseRange(fromS, toS)
	if err != nil {
		fmt.Fprintf(os.Stderr, "emergentd record: %v\n", err)
		return 2
	}
	text, err := os.ReadFile(file)
	if err != nil {
		fmt.Fprintf(os.Stderr, "emergentd record: %v\n", err)
		return 1
	}
	cfg, err := daemon.LoadConfig(file, promURL, "")
	if err != nil {
		fmt.Fprintf(os.Stderr, "emergentd record: %v\n", err)
		return 1
	}
	src, err := sources.NewPrometheus(cfg.Prometheus, logger, prometheus.NewRegistry())
	if err != nil {
		fmt.Fprintf(os.Stderr, "emergentd record: %v\n", err)
		return 1
	}
	f, err := os.Create(out)
	if err != nil {
		fmt.Fprintf(os.Stderr, "emergentd record: %v\n", err)
		return 1
	}
	replayCfg, err := daemon.ReplayConfig(text)
	if err != nil {
		f.Close()
		os.Remove(out)
		fmt.Fprintf(os.Stderr, "emergentd record: %v\n", err)
		return 1
	}
	rg := daemon.RecordRange(cfg, from, to)
	err = sources.Record(context.Background(), src, cfg.Queries(), rg, f, sources.RecordOptions{Gzip: true, Config: replayCfg})
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(out)
		fmt.Fprintf(os.Stderr, "emergentd record: %v\n", err)
		return 1
	}
	fmt.Printf("recorded %d queries from %s to %s every %s into %s\n", len(cfg.Queries()),
		rg.Start.Format(time.RFC3339), rg.End.Format(time.RFC3339), rg.Step, out)
	return 0
}

// shippedRecording is what `emergentd replay` runs with no file: the quick start.
//
//go:embed quickstart.rec.json.gz
var shippedRecording []byte

func replay(file, configFile string, logger *slog.Logger) int {
	var rec *sources.Recorded
	var err error
	if file == "" {
		rec, err = sources.ReadRecording(bytes.NewReader(shippedRecording))
	} else {
		rec, err = sources.LoadRecording(file)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "emergentd replay: %v\n", err)
		return 1
	}
	var cfg *config.Config
	switch {
	case configFile != "":
		cfg, err = config.LoadFile(configFile)
	case rec.Config() != "":
		cfg, err = config.Load([]byte(rec.Config()), "recording:rules.toml")
	default:
		cfg, err = config.LoadFile("rules.toml")
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "emergentd replay: %v\n", err)
		return 1
	}
	if _, err := daemon.Replay(context.Background(), cfg, rec, os.Stdout, logger); err != nil {
		fmt.Fprintf(os.Stderr, "emergentd replay: %v\n", err)
		return 1
	}
	return 0
}

func backtest(file, promURL, recording, fromS, toS string, logger *slog.Logger) int {
	from, to, err := parseRange(fromS, toS)
	if err != nil {
		fmt.Fprintf(os.Stderr, "emergentd backtest: %v\n", err)
		return 2
	}
	var cfg *config.Config
	var src engine.Source
	if recording != "" {
		cfg, err = config.LoadFile(file)
		if err == nil {
			src, err = sources.LoadRecording(recording)
		}
	} else {
		cfg, err = daemon.LoadConfig(file, promURL, "")
		if err == nil {
			src, err = sources.NewPrometheus(cfg.Prometheus, logger, prometheus.NewRegistry())
		}
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "emergentd backtest: %v\n", err)
		return 1
	}
	episodes, err := daemon.Backtest(context.Background(), cfg, src, from, to, logger)
	if err != nil {
		fmt.Fprintf(os.Stderr, "emergentd backtest: %v\n", err)
		return 1
	}
	if err := daemon.WriteJSONLines(os.Stdout, episodes); err != nil {
		fmt.Fprintf(os.Stderr, "emergentd backtest: %v\n", err)
		return 1
	}
	return 0
}
