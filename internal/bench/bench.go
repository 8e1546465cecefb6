// Package bench is emergentd's detection-quality benchmark: it generates services that live
// through known incidents (fragmented token caches, replica creep, flush storms) and controls
// (surges, deploys, Redis restarts, maintenance flushes, scrape gaps, counter resets, real NAB
// demand), backfills them into a real Prometheus, runs emergentd's backtest and the alerting
// rules teams write today (static thresholds, ratios to inbound, z-score bands) against it, and
// scores every detector against the truth. cmd/emergent-bench is its command line.
//
// It starts Prometheus (and promtool) as child processes on 127.0.0.1 through internal/stack
// and stops them by PID; it reads the NAB series from ../shared/data/nab next to the repository
// and never copies them.
package bench

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
)

// modulePath identifies the repository's go.mod.
const modulePath = "module github.com/emergent-sh/emergent\n"

// RepoRoot returns the repository root at or above dir.
func RepoRoot(dir string) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	for d := abs; ; d = filepath.Dir(d) {
		if b, err := os.ReadFile(filepath.Join(d, "go.mod")); err == nil && bytes.HasPrefix(b, []byte(modulePath)) {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("bench: no go.mod of github.com/emergent-sh/emergent at or above %s", abs)
		}
	}
}

// NABDir is where the NAB series live relative to the repository root.
func NABDir(root string) string {
	return filepath.Join(filepath.Dir(root), "shared", "data", "nab")
}
