// Package promtest starts a real Prometheus server for tests: the `prometheus` binary from the
// PATH (Debian bookworm ships 2.42), on 127.0.0.1, with its own TSDB in a temporary directory,
// optionally backfilled from OpenMetrics text with promtool before it starts. It is the testing
// face of internal/stack: the server is stopped, and its log printed on failure, when the test
// ends.
//
// A missing binary fails the test: the end-to-end tests are the proof that emergentd works
// against Prometheus, and a skip would let CI pass without them. Install it with
// `apt-get install prometheus`.
package promtest

import (
	"context"
	"testing"
	"time"

	"github.com/emergent-sh/emergent/internal/stack"
)

// Defaults for zero Options fields.
const (
	DefaultRetention      = stack.DefaultRetention
	DefaultScrapeInterval = 15 * time.Second
	DefaultReadyTimeout   = stack.DefaultReadyTimeout
)

// Options configure a test Prometheus. The zero value starts an empty server that scrapes
// nothing.
type Options struct {
	// OpenMetrics, if set, is OpenMetrics text imported with `promtool tsdb
	// create-blocks-from openmetrics` before the server starts. Timestamps are in seconds.
	// "# EOF" is appended when missing. Samples may be recent but must be newer than Retention.
	OpenMetrics []byte
	// ScrapeTargets are host:port addresses scraped as job "stack".
	ScrapeTargets []string
	// ScrapeInterval is the scrape (and rule evaluation) interval; DefaultScrapeInterval if 0.
	ScrapeInterval time.Duration
	// LookbackDelta sets --query.lookback-delta; Prometheus's default (5m) if 0.
	LookbackDelta time.Duration
	// Retention sets --storage.tsdb.retention.time; DefaultRetention if 0.
	Retention time.Duration
	// ExtraArgs are appended to the prometheus command line.
	ExtraArgs []string
	// ReadyTimeout bounds the wait for /-/ready; DefaultReadyTimeout if 0.
	ReadyTimeout time.Duration
	// Addr is the host:port to listen on, for a test that points a client at Prometheus
	// before it starts; a free port on 127.0.0.1 if empty.
	Addr string
}

// Server is a running Prometheus started by Start.
type Server struct {
	// URL is the server's base URL, e.g. http://127.0.0.1:41234.
	URL string
	// DataDir is the TSDB directory.
	DataDir string
	proc    *stack.Process
}

// Start starts Prometheus and waits until it is ready. Every problem fails t.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	dir := t.TempDir()
	p, err := stack.StartPrometheus(context.Background(), stack.PrometheusOptions{
		Dir: dir, OpenMetrics: opts.OpenMetrics, ScrapeTargets: opts.ScrapeTargets,
		ScrapeInterval: opts.ScrapeInterval, LookbackDelta: opts.LookbackDelta, Retention: opts.Retention,
		ExtraArgs: opts.ExtraArgs, ReadyTimeout: opts.ReadyTimeout, Addr: opts.Addr,
	})
	if err != nil {
		t.Fatalf("promtest: %v", err)
	}
	s := &Server{URL: p.URL, DataDir: dir + "/data", proc: p}
	t.Cleanup(func() {
		p.Stop()
		if t.Failed() {
			t.Logf("prometheus log:\n%s", p.Log())
		}
	})
	return s
}

// Stop stops the server (SIGTERM, then SIGKILL after a grace period); safe to call twice, e.g.
// to test how callers behave when Prometheus goes away.
func (s *Server) Stop() { s.proc.Stop() }

// Log returns what the server has logged so far.
func (s *Server) Log() string { return s.proc.Log() }
