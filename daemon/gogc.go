package daemon

import (
	"log/slog"
	"os"
	"runtime/debug"
)

// GCPercent is the collector's target percentage (GOGC) emergentd runs with unless told
// otherwise: the heap may grow by half the live heap between collections, where Go's default
// (100) lets it double. emergentd's heap is nearly all state that lives as long as the process
// (each group's history and learned levels), and a cycle allocates about a tenth of it, so the
// default's doubling is memory held for garbage the process hardly makes: at 10 000 groups the
// resident size settled at 306–317 MiB over a 137 MiB live heap, and at 50 at 240 MiB, for
// four collections in 20 cycles instead of one (BENCHMARKS.md, the scale issue's
// thirteenth cut). Prometheus lowered its default for a heap of the same kind (to 75 in 2.53,
// after a first 50 whose CPU cost its ingestion, which makes garbage all the time, did not want;
// prometheus/prometheus#14285), where emergentd's cycle makes a little every 30 s. Under a
// memory limit (GOMEMLIMIT) the limit still decides first at 100 000 groups.
const GCPercent = 50

// SetGCPercent sets GOGC to percent; GOGC in the environment wins. It returns the GOGC in
// effect afterwards.
func SetGCPercent(percent int, logger *slog.Logger) int {
	if env, ok := os.LookupEnv("GOGC"); ok {
		// The runtime read it at start; asking for it sets it, so set it back.
		inEffect := debug.SetGCPercent(100)
		debug.SetGCPercent(inEffect)
		logger.Info("GOGC from the environment", "GOGC", env)
		return inEffect
	}
	debug.SetGCPercent(percent)
	logger.Info("GOGC set", "GOGC", percent)
	return percent
}
