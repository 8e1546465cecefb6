// Package promtest starts a real Prometheus server for tests: the `prometheus` binary from the
// PATH (Debian bookworm ships 2.42), on 127.0.0.1, with its own TSDB in a temporary directory,
// optionally backfilled from OpenMetrics text with promtool before it starts. It is test-only
// code and owns nothing else; the server is stopped when the test ends.
//
// A missing binary fails the test: the end-to-end tests are the proof that emergentd works
// against Prometheus, and a skip would let CI pass without them. Install it with
// `apt-get install prometheus`.
package promtest

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/common/model"
)

// Defaults for zero Options fields.
const (
	// DefaultRetention keeps backfilled history: Prometheus deletes blocks older than the
	// retention (relative to the newest block), and baselines look weeks back.
	DefaultRetention = 30 * 24 * time.Hour
	// DefaultScrapeInterval is used when targets are given without an interval.
	DefaultScrapeInterval = 15 * time.Second
	// DefaultReadyTimeout bounds how long Start waits for /-/ready.
	DefaultReadyTimeout = 60 * time.Second
	// stopTimeout is how long a SIGTERM gets before SIGKILL.
	stopTimeout = 10 * time.Second
	// startAttempts covers the race between picking a free port and Prometheus binding it.
	startAttempts = 3
)

// Options configure a test Prometheus. The zero value starts an empty server that scrapes
// nothing.
type Options struct {
	// OpenMetrics, if set, is OpenMetrics text imported with `promtool tsdb
	// create-blocks-from openmetrics` before the server starts. Timestamps are in seconds.
	// The terminating "# EOF" line promtool requires is appended when missing. Samples may be
	// recent (promtool writes blocks; they need not be older than the head) but must be newer
	// than Retention.
	OpenMetrics []byte
	// ScrapeTargets are host:port addresses scraped as job "promtest".
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
}

// Server is a running Prometheus started by Start.
type Server struct {
	// URL is the server's base URL, e.g. http://127.0.0.1:41234.
	URL string
	// DataDir is the TSDB directory.
	DataDir string

	logPath  string
	cmd      *exec.Cmd
	exited   chan struct{} // closed when the process has exited
	waitErr  error         // set before exited is closed
	stopOnce sync.Once
}

// Start starts Prometheus and waits until it is ready. The server is stopped, and its log
// printed if the test failed, when t ends. Every problem fails t.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Fatalf("promtest: the prometheus binary is not on PATH (%v); install it with `apt-get install prometheus` (Debian bookworm ships 2.42)", err)
	}
	dir := t.TempDir()
	dataDir := filepath.Join(dir, "data")
	if err := os.Mkdir(dataDir, 0o755); err != nil {
		t.Fatalf("promtest: %v", err)
	}
	if len(opts.OpenMetrics) > 0 {
		backfill(t, dir, dataDir, opts.OpenMetrics)
	}
	configPath := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(configPath, []byte(configYAML(opts)), 0o644); err != nil {
		t.Fatalf("promtest: writing config: %v", err)
	}
	readyTimeout := opts.ReadyTimeout
	if readyTimeout <= 0 {
		readyTimeout = DefaultReadyTimeout
	}

	for attempt := 1; ; attempt++ {
		s, err := start(t, bin, dir, dataDir, configPath, opts, attempt)
		if err != nil {
			t.Fatalf("promtest: %v", err)
		}
		err = s.waitReady(readyTimeout)
		if err == nil {
			return s
		}
		log := s.log()
		s.Stop()
		if attempt < startAttempts && strings.Contains(log, "address already in use") {
			t.Logf("promtest: port taken before prometheus could bind it; retrying")
			continue
		}
		t.Fatalf("promtest: %v\nprometheus log (%s):\n%s", err, s.logPath, log)
	}
}

// start launches one prometheus process on a fresh port; the caller waits for readiness.
func start(t testing.TB, bin, dir, dataDir, configPath string, opts Options, attempt int) (*Server, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	retention := opts.Retention
	if retention <= 0 {
		retention = DefaultRetention
	}
	args := []string{
		"--config.file=" + configPath,
		"--web.listen-address=" + addr,
		"--storage.tsdb.path=" + dataDir,
		"--storage.tsdb.retention.time=" + promDuration(retention),
		"--log.level=info",
	}
	if opts.LookbackDelta > 0 {
		args = append(args, "--query.lookback-delta="+promDuration(opts.LookbackDelta))
	}
	args = append(args, opts.ExtraArgs...)

	logPath := filepath.Join(dir, fmt.Sprintf("prometheus-%d.log", attempt))
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("creating log file: %w", err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// If the test binary dies without running cleanups, take Prometheus with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("starting %s: %w", bin, err)
	}
	s := &Server{
		URL:     "http://" + addr,
		DataDir: dataDir,
		logPath: logPath,
		cmd:     cmd,
		exited:  make(chan struct{}),
	}
	go func() {
		s.waitErr = cmd.Wait()
		logFile.Close()
		close(s.exited)
	}()
	t.Cleanup(func() {
		s.Stop()
		if t.Failed() {
			t.Logf("prometheus log (%s):\n%s", s.logPath, s.log())
		}
	})
	return s, nil
}

// waitReady polls /-/ready until it answers 200, the process exits, or timeout passes.
func (s *Server) waitReady(timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	client := &http.Client{Timeout: time.Second}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.URL+"/-/ready", nil)
		if err != nil {
			return err
		}
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-s.exited:
			return fmt.Errorf("prometheus exited before it was ready: %v", s.waitErr)
		case <-ctx.Done():
			return fmt.Errorf("prometheus at %s not ready after %s", s.URL, timeout)
		case <-tick.C:
		}
	}
}

// Stop stops the server: SIGTERM, then SIGKILL if it has not exited after a grace period.
// It signals only the process Start launched, and is safe to call more than once (e.g. to
// test how callers behave when Prometheus goes away).
func (s *Server) Stop() {
	s.stopOnce.Do(func() {
		select {
		case <-s.exited:
			return
		default:
		}
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.exited:
		case <-time.After(stopTimeout):
			_ = s.cmd.Process.Kill()
			<-s.exited
		}
	})
}

// Log returns what the server has logged so far.
func (s *Server) Log() string { return s.log() }

func (s *Server) log() string {
	b, err := os.ReadFile(s.logPath)
	if err != nil {
		return fmt.Sprintf("(reading log: %v)", err)
	}
	const max = 64 << 10
	if len(b) > max {
		b = append([]byte("…\n"), b[len(b)-max:]...)
	}
	return string(b)
}

// backfill imports OpenMetrics text into dataDir with promtool.
func backfill(t testing.TB, dir, dataDir string, om []byte) {
	t.Helper()
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatalf("promtest: the promtool binary is not on PATH (%v); install it with `apt-get install prometheus`", err)
	}
	data := bytes.TrimRight(om, " \t\r\n")
	if !bytes.HasSuffix(data, []byte("# EOF")) {
		data = append(data, "\n# EOF"...)
	}
	data = append(data, '\n')
	path := filepath.Join(dir, "backfill.om")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatalf("promtest: writing backfill file: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, promtool, "tsdb", "create-blocks-from", "openmetrics", path, dataDir).CombinedOutput()
	if err != nil {
		t.Fatalf("promtest: promtool tsdb create-blocks-from openmetrics: %v\n%s", err, out)
	}
}

// configYAML renders prometheus.yml for opts.
func configYAML(opts Options) string {
	interval := opts.ScrapeInterval
	if interval <= 0 {
		interval = DefaultScrapeInterval
	}
	var b strings.Builder
	fmt.Fprintf(&b, "global:\n  scrape_interval: %s\n  evaluation_interval: %s\n", promDuration(interval), promDuration(interval))
	if len(opts.ScrapeTargets) > 0 {
		b.WriteString("scrape_configs:\n  - job_name: promtest\n    static_configs:\n      - targets:\n")
		for _, target := range opts.ScrapeTargets {
			fmt.Fprintf(&b, "          - %s\n", strconv.Quote(target))
		}
	}
	return b.String()
}

// promDuration formats d the way Prometheus flags and YAML parse durations ("30d", "1m30s").
func promDuration(d time.Duration) string {
	return model.Duration(d).String()
}

// freePort asks the kernel for a free TCP port on 127.0.0.1. Another process may take it
// before Prometheus binds it; Start retries in that case.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("finding a free port: %w", err)
	}
	defer l.Close()
	addr, ok := l.Addr().(*net.TCPAddr)
	if !ok {
		return 0, fmt.Errorf("unexpected listener address %v", l.Addr())
	}
	return addr.Port, nil
}
