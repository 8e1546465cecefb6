package daemon

import (
	"fmt"
	"log/slog"

	"github.com/KimMachineGun/automemlimit/memlimit"
)

// MemoryLimitRatio is the share of the memory limit GOMEMLIMIT is set to unless told otherwise:
// Prometheus's default for the same flag. The tenth left over is for what the Go runtime's limit
// does not see coming (memory it has not yet returned to the kernel, cgroup page cache from the
// state file) before the kernel's OOM killer does.
const MemoryLimitRatio = 0.9

// SetMemoryLimit sets GOMEMLIMIT to ratio times the limit provider reports (emergentd's
// cgroup's; a harness measuring emergentd as it runs in a container passes that container's
// limit), so the collector works harder near the limit instead of the process being killed.
// GOMEMLIMIT in the environment wins. It returns the GOMEMLIMIT in effect afterwards
// (math.MaxInt64 where there is no limit).
func SetMemoryLimit(ratio float64, provider memlimit.Provider, logger *slog.Logger) (int64, error) {
	limit, err := memlimit.Set(memlimit.WithRatio(ratio), memlimit.WithProvider(provider), memlimit.WithLogger(logger))
	if err != nil {
		return 0, fmt.Errorf("GOMEMLIMIT from the memory limit: %w", err)
	}
	return limit, nil
}
