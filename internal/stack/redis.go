package stack

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// RedisOptions configure a redis-server.
type RedisOptions struct {
	// Dir is the working directory (where Redis would write a dump) and holds the log. Required.
	Dir string
	// Addr, if set, is where the server listens instead of a free port: restart a server on
	// the address its clients and its exporter already use.
	Addr string
	// Persist keeps the default RDB snapshots. Off by default: a restarted server starts
	// empty, as a cache without persistence does.
	Persist      bool
	ExtraArgs    []string
	ReadyTimeout time.Duration
}

// StartRedis starts redis-server on 127.0.0.1 and waits until it answers PING.
func StartRedis(ctx context.Context, opts RedisOptions) (*Process, error) {
	if opts.Dir == "" {
		return nil, fmt.Errorf("redis: Dir is required")
	}
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("redis: %w", err)
	}
	return Start(ctx, Spec{
		Name: "redis", Binary: "redis-server", Package: "redis-server", Dir: opts.Dir, Addr: opts.Addr,
		Args: func(addr string) []string {
			host, port, _ := net.SplitHostPort(addr)
			args := []string{
				"--bind", host, "--port", port,
				"--dir", opts.Dir,
				"--daemonize", "no",
				"--protected-mode", "yes",
				"--logfile", "", // stdout, which Start sends to the log file
			}
			if !opts.Persist {
				// An empty argument reaches Redis as `save ""`: no snapshots at all.
				args = append(args, "--save", "", "--appendonly", "no")
			}
			return append(args, opts.ExtraArgs...)
		},
		Ready:        RedisReady,
		ReadyTimeout: opts.ReadyTimeout,
	})
}

// RedisReady is a readiness check that wants PONG: Redis accepts connections while it still
// loads its dataset, and answers -LOADING until it is done.
func RedisReady(ctx context.Context, addr string) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	deadline := time.Now().Add(time.Second)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	if err := c.SetDeadline(deadline); err != nil {
		return err
	}
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	buf := make([]byte, 128)
	n, err := c.Read(buf)
	if err != nil {
		return err
	}
	if reply := strings.TrimSpace(string(buf[:n])); reply != "+PONG" {
		return fmt.Errorf("PING: %s", reply)
	}
	return nil
}

// firstOnPath returns the first of names found on PATH, or the first name (so that the
// missing-binary error names the Debian one). Debian renames some upstream binaries
// (redis_exporter → prometheus-redis-exporter), and a machine may have either.
func firstOnPath(names ...string) string {
	for _, n := range names {
		if _, err := exec.LookPath(n); err == nil {
			return n
		}
	}
	return names[0]
}

// writeFile writes a generated config file into dir.
func writeFile(dir, name, text string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	path := filepath.Join(dir, name)
	return path, os.WriteFile(path, []byte(text), 0o644)
}
