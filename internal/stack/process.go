// Package stack starts the real components emergentd works with — Prometheus, and in the
// end-to-end suite Redis, redis_exporter, Alertmanager and VictoriaMetrics — as child processes
// on 127.0.0.1, on ports it picks, with data in a directory the caller owns, and stops them by
// the PID it started. Tests wrap it (internal/promtest); benchmark commands use it directly.
// It never stops a process it did not start, and never listens beyond loopback.
package stack

import (
	"context"
	"errors"
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
	"time"
)

const (
	// stopTimeout is how long SIGTERM gets before SIGKILL.
	stopTimeout = 10 * time.Second
	// startAttempts covers the race between picking a free port and the server binding it.
	startAttempts = 3
	// DefaultReadyTimeout bounds how long Start waits for readiness.
	DefaultReadyTimeout = 60 * time.Second
)

// Spec says how to start one server.
type Spec struct {
	// Name names the server in errors and log files ("prometheus", "redis").
	Name string
	// Binary is looked up on PATH; Package is the Debian package that provides it.
	Binary, Package string
	// Args returns the command line for a server listening on addr (127.0.0.1:port).
	Args func(addr string) []string
	// Dir is the working directory and where the log file goes.
	Dir string
	// Addr, if set, is the address (127.0.0.1:port) to listen on instead of a free port, e.g.
	// to restart a server where its clients expect it. A busy Addr is not retried.
	Addr string
	// Ready returns nil once the server at addr serves; polled until ReadyTimeout.
	Ready        func(ctx context.Context, addr string) error
	ReadyTimeout time.Duration
}

// Process is a running server started by Start.
type Process struct {
	Name string
	// Addr is host:port on 127.0.0.1; URL is http://Addr.
	Addr, URL string
	logPath   string
	cmd       *exec.Cmd
	exited    chan struct{}
	waitErr   error
	stopOnce  sync.Once
}

// ErrMissingBinary reports a component that is not installed.
var ErrMissingBinary = errors.New("binary not installed")

// Start launches the server and waits until it is ready.
func Start(ctx context.Context, spec Spec) (*Process, error) {
	bin, err := exec.LookPath(spec.Binary)
	if err != nil {
		return nil, fmt.Errorf("%s: %w: %s is not on PATH; install it with `apt-get install %s`", spec.Name, ErrMissingBinary, spec.Binary, spec.Package)
	}
	timeout := spec.ReadyTimeout
	if timeout <= 0 {
		timeout = DefaultReadyTimeout
	}
	for attempt := 1; ; attempt++ {
		p, err := launch(bin, spec, attempt)
		if err != nil {
			return nil, err
		}
		err = p.waitReady(ctx, spec.Ready, timeout)
		if err == nil {
			return p, nil
		}
		log := p.Log()
		p.Stop()
		if attempt < startAttempts && spec.Addr == "" && strings.Contains(log, "address already in use") {
			continue
		}
		return nil, fmt.Errorf("%s: %w\n%s log (%s):\n%s", spec.Name, err, spec.Name, p.logPath, log)
	}
}

func launch(bin string, spec Spec, attempt int) (*Process, error) {
	addr := spec.Addr
	if addr == "" {
		port, err := FreePort()
		if err != nil {
			return nil, err
		}
		addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	}
	logPath := filepath.Join(spec.Dir, fmt.Sprintf("%s-%d.log", spec.Name, attempt))
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("%s: log file: %w", spec.Name, err)
	}
	cmd := exec.Command(bin, spec.Args(addr)...)
	cmd.Dir = spec.Dir
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// If our process dies without cleaning up, take the server with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("%s: starting %s: %w", spec.Name, bin, err)
	}
	p := &Process{Name: spec.Name, Addr: addr, URL: "http://" + addr, logPath: logPath, cmd: cmd, exited: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		logFile.Close()
		close(p.exited)
	}()
	return p, nil
}

func (p *Process) waitReady(ctx context.Context, ready func(context.Context, string) error, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		if err := ready(ctx, p.Addr); err == nil {
			return nil
		}
		select {
		case <-p.exited:
			return fmt.Errorf("exited before it was ready: %v", p.waitErr)
		case <-ctx.Done():
			return fmt.Errorf("not ready at %s after %s", p.Addr, timeout)
		case <-tick.C:
		}
	}
}

// PID is the process id Start launched.
func (p *Process) PID() int { return p.cmd.Process.Pid }

// Exited is closed when the process has exited.
func (p *Process) Exited() <-chan struct{} { return p.exited }

// Stop sends SIGTERM, then SIGKILL after a grace period, to the process Start launched only.
// It is safe to call more than once.
func (p *Process) Stop() {
	p.stopOnce.Do(func() {
		select {
		case <-p.exited:
			return
		default:
		}
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(stopTimeout):
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
	})
}

// Kill sends SIGKILL (a crash, for fault tests) and waits for the exit.
func (p *Process) Kill() {
	p.stopOnce.Do(func() {
		_ = p.cmd.Process.Kill()
		<-p.exited
	})
}

// Log returns the last 64 KiB the server logged.
func (p *Process) Log() string {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return fmt.Sprintf("(reading log: %v)", err)
	}
	const max = 64 << 10
	if len(b) > max {
		b = append([]byte("…\n"), b[len(b)-max:]...)
	}
	return string(b)
}

// HTTPReady returns a readiness check that wants 200 from path.
func HTTPReady(path string) func(context.Context, string) error {
	client := &http.Client{Timeout: time.Second}
	return func(ctx context.Context, addr string) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+path, nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s: %s", path, resp.Status)
		}
		return nil
	}
}

// TCPReady is a readiness check that wants the port to accept connections.
func TCPReady(ctx context.Context, addr string) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	return c.Close()
}

// FreePort asks the kernel for a free TCP port on 127.0.0.1. Another process may take it
// before the server binds it; Start retries in that case.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("finding a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
