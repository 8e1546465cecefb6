package stack

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/common/model"
)

// DefaultVMLatencyOffset is VictoriaMetrics' own default for -search.latencyOffset: samples
// newer than now−30s are hidden from queries (the last points repeat older values), so a
// client must evaluate at least this far in the past to read settled data.
const DefaultVMLatencyOffset = 30 * time.Second

// VictoriaMetricsOptions configure a single-node VictoriaMetrics that scrapes like Prometheus.
type VictoriaMetricsOptions struct {
	// Dir holds the scrape config, the storage (Dir/data) and the log. Required.
	Dir string
	// ScrapeConfigsYAML is inserted verbatim under scrape_configs (VictoriaMetrics reads
	// Prometheus's scrape_configs and rejects fields it does not know).
	ScrapeConfigsYAML string
	// ScrapeInterval is the global scrape interval (15s if 0); the scrape timeout is capped
	// to it.
	ScrapeInterval time.Duration
	// LatencyOffset sets -search.latencyOffset; DefaultVMLatencyOffset if 0.
	LatencyOffset time.Duration
	// Retention sets -retentionPeriod (at least a day, VictoriaMetrics' unit); a day if 0.
	Retention    time.Duration
	ExtraArgs    []string
	ReadyTimeout time.Duration
}

// StartVictoriaMetrics starts victoria-metrics and waits for /health. Its query API is
// Prometheus-compatible at the same base URL (/api/v1/query_range).
func StartVictoriaMetrics(ctx context.Context, opts VictoriaMetricsOptions) (*Process, error) {
	if opts.Dir == "" {
		return nil, fmt.Errorf("victoria-metrics: Dir is required")
	}
	configPath, err := writeFile(opts.Dir, "scrape.yml", vmScrapeYAML(opts))
	if err != nil {
		return nil, fmt.Errorf("victoria-metrics: writing scrape config: %w", err)
	}
	latency := opts.LatencyOffset
	if latency <= 0 {
		latency = DefaultVMLatencyOffset
	}
	retentionHours := int(max(opts.Retention, 24*time.Hour) / time.Hour)
	return Start(ctx, Spec{
		Name: "victoria-metrics", Binary: firstOnPath("victoria-metrics", "victoria-metrics-prod"),
		Package: "victoria-metrics", Dir: opts.Dir,
		Args: func(addr string) []string {
			return append([]string{
				"-httpListenAddr=" + addr,
				"-storageDataPath=" + filepath.Join(opts.Dir, "data"),
				fmt.Sprintf("-retentionPeriod=%dh", retentionHours),
				"-promscrape.config=" + configPath,
				"-search.latencyOffset=" + latency.String(),
			}, opts.ExtraArgs...)
		},
		Ready:        HTTPReady("/health"),
		ReadyTimeout: opts.ReadyTimeout,
	})
}

func vmScrapeYAML(opts VictoriaMetricsOptions) string {
	interval := opts.ScrapeInterval
	if interval <= 0 {
		interval = 15 * time.Second
	}
	// VictoriaMetrics' default scrape timeout (10s) is longer than a short interval.
	timeout := min(interval, 10*time.Second)
	var b strings.Builder
	fmt.Fprintf(&b, "global:\n  scrape_interval: %s\n  scrape_timeout: %s\n", model.Duration(interval), model.Duration(timeout))
	if opts.ScrapeConfigsYAML != "" {
		b.WriteString("scrape_configs:\n" + opts.ScrapeConfigsYAML + "\n")
	}
	return b.String()
}
