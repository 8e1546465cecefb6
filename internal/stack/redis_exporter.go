package stack

import (
	"context"
	"fmt"
	"os"
	"time"
)

// RedisExporterOptions configure a redis_exporter.
type RedisExporterOptions struct {
	// Dir holds the log. Required.
	Dir string
	// RedisAddr is the host:port of the Redis to export. Required.
	RedisAddr    string
	ExtraArgs    []string
	ReadyTimeout time.Duration
}

// StartRedisExporter starts redis_exporter (Debian: prometheus-redis-exporter) for one Redis
// and waits for /health. It connects to Redis on every scrape (about six commands each, a
// floor in every Redis command rate), so it may start before Redis and outlives restarts.
func StartRedisExporter(ctx context.Context, opts RedisExporterOptions) (*Process, error) {
	if opts.Dir == "" || opts.RedisAddr == "" {
		return nil, fmt.Errorf("redis_exporter: Dir and RedisAddr are required")
	}
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("redis_exporter: %w", err)
	}
	return Start(ctx, Spec{
		Name: "redis_exporter", Binary: firstOnPath("prometheus-redis-exporter", "redis_exporter"),
		Package: "prometheus-redis-exporter", Dir: opts.Dir,
		Args: func(addr string) []string {
			return append([]string{
				"-redis.addr=redis://" + opts.RedisAddr,
				"-web.listen-address=" + addr,
				// Only Redis's metrics, not the exporter's Go runtime.
				"-redis-only-metrics",
				// Fail a scrape of a Redis that is down within a 1 s scrape interval.
				"-connection-timeout=900ms",
			}, opts.ExtraArgs...)
		},
		Ready:        HTTPReady("/health"),
		ReadyTimeout: opts.ReadyTimeout,
	})
}
