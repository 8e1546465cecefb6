package stack

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/common/model"
)

// DefaultRetention keeps backfilled history: Prometheus deletes blocks older than the retention
// (relative to the newest block), and baselines look weeks back.
const DefaultRetention = 30 * 24 * time.Hour

// PrometheusOptions configure a Prometheus. The zero value (with Dir) is an empty server.
type PrometheusOptions struct {
	// Dir holds the config, the TSDB (Dir/data) and the log. Required.
	Dir string
	// OpenMetrics, if set, is imported with `promtool tsdb create-blocks-from openmetrics`
	// before the server starts; "# EOF" is appended when missing. OpenMetricsFile is the same
	// from a file, for large backfills.
	OpenMetrics     []byte
	OpenMetricsFile string
	// ScrapeTargets are host:port addresses scraped as job "stack"; ScrapeConfigsYAML, if set,
	// is inserted verbatim under scrape_configs instead (for labels and several jobs).
	ScrapeTargets     []string
	ScrapeConfigsYAML string
	// ScrapeInterval is the scrape and rule evaluation interval (15s if 0).
	ScrapeInterval time.Duration
	// RuleFiles are Prometheus rule files loaded by the server (alerting-rule anchors).
	RuleFiles []string
	// AlertmanagerURLs receive the server's alerts.
	AlertmanagerURLs []string
	LookbackDelta    time.Duration
	Retention        time.Duration
	ExtraArgs        []string
	ReadyTimeout     time.Duration
	// Addr is the host:port to listen on; a free port on 127.0.0.1 if empty.
	Addr string
}

// StartPrometheus backfills (if asked) and starts Prometheus, and waits for /-/ready.
func StartPrometheus(ctx context.Context, opts PrometheusOptions) (*Process, error) {
	if opts.Dir == "" {
		return nil, fmt.Errorf("prometheus: Dir is required")
	}
	dataDir := filepath.Join(opts.Dir, "data")
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return nil, fmt.Errorf("prometheus: %w", err)
	}
	if len(opts.OpenMetrics) > 0 {
		path := filepath.Join(opts.Dir, "backfill.om")
		if err := os.WriteFile(path, opts.OpenMetrics, 0o644); err != nil {
			return nil, fmt.Errorf("prometheus: writing backfill file: %w", err)
		}
		opts.OpenMetricsFile = path
	}
	if opts.OpenMetricsFile != "" {
		if err := Backfill(ctx, opts.OpenMetricsFile, dataDir); err != nil {
			return nil, err
		}
	}
	configPath := filepath.Join(opts.Dir, "prometheus.yml")
	if err := os.WriteFile(configPath, []byte(prometheusYAML(opts)), 0o644); err != nil {
		return nil, fmt.Errorf("prometheus: writing config: %w", err)
	}
	retention := opts.Retention
	if retention <= 0 {
		retention = DefaultRetention
	}
	return Start(ctx, Spec{
		Name: "prometheus", Binary: "prometheus", Package: "prometheus", Dir: opts.Dir, Addr: opts.Addr,
		Args: func(addr string) []string {
			args := []string{
				"--config.file=" + configPath,
				"--web.listen-address=" + addr,
				"--storage.tsdb.path=" + dataDir,
				"--storage.tsdb.retention.time=" + model.Duration(retention).String(),
				"--web.enable-lifecycle",
			}
			if opts.LookbackDelta > 0 {
				args = append(args, "--query.lookback-delta="+model.Duration(opts.LookbackDelta).String())
			}
			return append(args, opts.ExtraArgs...)
		},
		Ready:        HTTPReady("/-/ready"),
		ReadyTimeout: opts.ReadyTimeout,
	})
}

// Backfill imports an OpenMetrics file into a TSDB directory with promtool.
func Backfill(ctx context.Context, openMetricsFile, dataDir string) error {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		return fmt.Errorf("backfill: %w: promtool is not on PATH; install it with `apt-get install prometheus`", ErrMissingBinary)
	}
	data, err := os.ReadFile(openMetricsFile)
	if err != nil {
		return fmt.Errorf("backfill: %w", err)
	}
	// promtool wants "# EOF" as the very last line, with no blank line before it.
	trimmed := bytes.TrimRight(data, " \t\r\n")
	if !bytes.HasSuffix(trimmed, []byte("# EOF")) || len(trimmed)+1 != len(data) {
		trimmed = bytes.TrimSuffix(trimmed, []byte("# EOF"))
		trimmed = append(bytes.TrimRight(trimmed, " \t\r\n"), "\n# EOF\n"...)
		if err := os.WriteFile(openMetricsFile, trimmed, 0o644); err != nil {
			return fmt.Errorf("backfill: %w", err)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, promtool, "tsdb", "create-blocks-from", "openmetrics", openMetricsFile, dataDir).CombinedOutput()
	if err != nil {
		return fmt.Errorf("promtool tsdb create-blocks-from openmetrics: %w\n%s", err, out)
	}
	return nil
}

func prometheusYAML(opts PrometheusOptions) string {
	interval := opts.ScrapeInterval
	if interval <= 0 {
		interval = 15 * time.Second
	}
	d := model.Duration(interval).String()
	var b strings.Builder
	fmt.Fprintf(&b, "global:\n  scrape_interval: %s\n  evaluation_interval: %s\n", d, d)
	if len(opts.RuleFiles) > 0 {
		b.WriteString("rule_files:\n")
		for _, f := range opts.RuleFiles {
			fmt.Fprintf(&b, "  - %s\n", strconv.Quote(f))
		}
	}
	if len(opts.AlertmanagerURLs) > 0 {
		b.WriteString("alerting:\n  alertmanagers:\n    - static_configs:\n        - targets:\n")
		for _, u := range opts.AlertmanagerURLs {
			fmt.Fprintf(&b, "          - %s\n", strconv.Quote(strings.TrimPrefix(strings.TrimPrefix(u, "http://"), "https://")))
		}
	}
	switch {
	case opts.ScrapeConfigsYAML != "":
		b.WriteString("scrape_configs:\n" + opts.ScrapeConfigsYAML + "\n")
	case len(opts.ScrapeTargets) > 0:
		b.WriteString("scrape_configs:\n  - job_name: stack\n    static_configs:\n      - targets:\n")
		for _, target := range opts.ScrapeTargets {
			fmt.Fprintf(&b, "          - %s\n", strconv.Quote(target))
		}
	}
	return b.String()
}
