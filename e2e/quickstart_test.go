package e2e

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emergent-sh/emergent/config"
	"github.com/emergent-sh/emergent/daemon"
	"github.com/emergent-sh/emergent/sources"
	"github.com/prometheus/client_golang/prometheus"
)

var updateQuickstart = flag.Bool("update-quickstart", false,
	"after the scenarios, record them from the suite's Prometheus (as `emergentd record` does) into "+
		"cmd/emergentd/quickstart.rec.json.gz, the recording `emergentd replay` runs without a file")

const (
	// quickstartFile is the recording embedded in emergentd: `emergentd replay` without FILE.
	quickstartFile = "../cmd/emergentd/quickstart.rec.json.gz"
	// maxQuickstartBytes keeps the embedded recording small.
	maxQuickstartBytes = 300 << 10
	// quickstartPromURL is the Prometheus URL the shipped recording's configuration names (its
	// graph links point there); a replay queries nothing.
	quickstartPromURL = "http://127.0.0.1:9090"
)

// quickstartHeader opens the configuration stored in the shipped recording.
const quickstartHeader = `# Configuration of emergentd's quick-start recording (` + "`emergentd replay`" + ` without FILE): the
# shipped rules.toml with the end-to-end suite's timings (scrapes every 1s, evaluation every
# 2s, rate windows of 20s), as the suite's primary emergentd ran them. Recorded from
# cmd/emergent-lab on a real stack (Redis, redis_exporter, Prometheus) by
#   go test -count=1 -v -run TestRealStack ./e2e -update-quickstart

`

// recordQuickstart records what the primary daemon's rules query, from its start to now, out
// of the suite's Prometheus — `emergentd record`'s code path (daemon.LoadConfig,
// daemon.RecordRange, sources.Record) — replays it as `emergentd replay` does, checks that the
// replay finds the incidents and nothing on the controls, and writes it to quickstartFile.
func (w *world) recordQuickstart(t *testing.T, incidents, controls []string) {
	ctx := context.Background()
	text := quickstartHeader + w.rulesText(daemonConfig{promURL: quickstartPromURL, delay: evalDelay})
	path := filepath.Join(w.dir, "quickstart.toml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	// As `emergentd record --config.file=quickstart.toml --prometheus.url=<the suite's>`.
	cfg, err := daemon.LoadConfig(path, w.prom.URL, "")
	if err != nil {
		t.Fatal(err)
	}
	src, err := sources.NewPrometheus(cfg.Prometheus, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	// From the step the primary daemon first evaluated (it bootstrapped there, so the replay
	// learns from the same history it did) to the last step whose scrapes have all landed.
	from := w.daemons["primary"].started.Add(-evalDelay)
	to := time.Now().Add(-evalDelay)
	rg := daemon.RecordRange(cfg, from, to)
	var buf bytes.Buffer
	if err := sources.Record(ctx, src, cfg.Queries(), rg, &buf, sources.RecordOptions{Gzip: true, Config: text}); err != nil {
		t.Fatal(err)
	}

	// Replay it exactly as `emergentd replay` does with the shipped file.
	rec, err := sources.ReadRecording(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	replayCfg, err := config.Load([]byte(rec.Config()), "recording:rules.toml")
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	n, err := daemon.Replay(ctx, replayCfg, rec, &out, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("recorded %d queries from %s to %s every %s (%d KiB gzip); replay:\n%s", len(cfg.Queries()),
		rg.Start.Format(time.TimeOnly), rg.End.Format(time.TimeOnly), rg.Step, buf.Len()>>10, out.String())

	var headers []string
	for _, line := range strings.Split(out.String(), "\n") {
		if strings.HasPrefix(line, "=== ") {
			headers = append(headers, line)
		}
	}
	has := func(state, kind, svc string) bool {
		for _, h := range headers {
			if strings.Contains(h, " "+state+" "+kind+" ") && strings.Contains(h, fmt.Sprintf("service=%q", svc)) {
				return true
			}
		}
		return false
	}
	for _, svc := range incidents {
		kind := "self_generated_traffic"
		if svc == "media" {
			kind = "flush_storm"
		}
		if !has("FIRING", kind, svc) {
			t.Errorf("the replay of the recording lacks FIRING %s for %s", kind, svc)
		}
	}
	if !has("RESOLVED", "self_generated_traffic", "checkout") {
		t.Errorf("the replay lacks checkout's resolve (its lab was switched back to shared)")
	}
	for _, svc := range controls {
		for _, h := range headers {
			if strings.Contains(h, fmt.Sprintf("service=%q", svc)) {
				t.Errorf("the replay raised something on the control %s: %s", svc, h)
			}
		}
	}
	if n != len(incidents) {
		t.Errorf("the replay found %d episodes, want %d (%v)", n, len(incidents), incidents)
	}
	if buf.Len() > maxQuickstartBytes {
		t.Errorf("the recording is %d KiB, more than %d KiB", buf.Len()>>10, maxQuickstartBytes>>10)
	}
	if t.Failed() {
		t.Fatalf("not writing %s", quickstartFile)
	}

	tmp := quickstartFile + ".tmp"
	if err := os.WriteFile(tmp, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, quickstartFile); err != nil {
		os.Remove(tmp)
		t.Fatal(err)
	}
	t.Logf("wrote %s (%d KiB)", quickstartFile, buf.Len()>>10)
}
