package daemon

import (
	"context"
	"log/slog"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emergent-sh/emergent/internal/promtest"
	"github.com/emergent-sh/emergent/internal/synth"
)

// TestResolveWhileDownIsDelivered: an episode fires and is posted; the daemon stops; the
// incident is fixed while it is down; the next daemon, with the same storage, reconstructs the
// episode from Prometheus and delivers its resolve — once, to the thread it posted — without
// posting the firing page again.
func TestResolveWhileDownIsDelivered(t *testing.T) {
	end := time.Now().Truncate(15 * time.Second)
	prom := promtest.Start(t, promtest.Options{OpenMetrics: synth.FixedHistory(end)})
	dir := t.TempDir()
	am := &recorder{}
	amSrv := httptest.NewServer(am)
	defer amSrv.Close()
	slack := &recorder{}
	slackSrv := httptest.NewServer(slack)
	defer slackSrv.Close()
	cfgPath := testConfig(t, dir, prom.URL, amSrv.URL, slackSrv.URL)
	storage := filepath.Join(dir, "data")

	run := func(now time.Time, until func() bool, what string) {
		t.Helper()
		d, err := New(Options{ConfigFile: cfgPath, StoragePath: storage, Logger: slog.New(slog.DiscardHandler),
			Now: func() time.Time { return now }})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- d.Run(ctx) }()
		waitFor(t, 60*time.Second, what, until)
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	count := func(word string) int {
		n := 0
		for _, s := range slack.all() {
			if strings.Contains(s, word) {
				n++
			}
		}
		return n
	}

	// First daemon: its clock says 80 minutes ago, while the bug was live.
	run(end.Add(-80*time.Minute), func() bool { return count("FIRING") == 1 }, "the firing post")
	// Second daemon: now, after the fix (at end-70m; resolved by end-10m, within
	// resolved_retention of now, so the resolve is still delivered).
	run(end, func() bool { return count("RESOLVED") == 1 }, "the resolve post")

	if n := count("FIRING: Self-generated"); n != 1 {
		t.Errorf("Slack got %d firing posts across the restart, want 1", n)
	}
	resolvedAtAM := false
	for _, a := range am.resolved(t) {
		if a.Labels["service"] == "orders" {
			resolvedAtAM = true
		}
	}
	if !resolvedAtAM {
		t.Error("Alertmanager was never told the episode resolved")
	}
}
