package daemon

import (
	"log/slog"
	"runtime/debug"
	"testing"
)

func TestSetGCPercent(t *testing.T) {
	before := debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetGCPercent(before) })
	logger := slog.New(slog.DiscardHandler)

	t.Run("default", func(t *testing.T) {
		debug.SetGCPercent(100)
		if got := SetGCPercent(GCPercent, logger); got != GCPercent {
			t.Errorf("SetGCPercent returned %d, want %d", got, GCPercent)
		}
		if got := debug.SetGCPercent(100); got != GCPercent {
			t.Errorf("GOGC in effect %d, want %d", got, GCPercent)
		}
	})
	t.Run("environment wins", func(t *testing.T) {
		t.Setenv("GOGC", "120")
		debug.SetGCPercent(120) // as the runtime read it at start
		if got := SetGCPercent(GCPercent, logger); got != 120 {
			t.Errorf("SetGCPercent returned %d, want the environment's 120", got)
		}
		if got := debug.SetGCPercent(100); got != 120 {
			t.Errorf("GOGC in effect %d, want the environment's 120", got)
		}
	})
}
