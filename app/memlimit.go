package app

import (
	"log/slog"
	"math"
	"os"
	"runtime/debug"

	"github.com/dustin/go-humanize"

	"github.com/bodystream/bodystream/config"
)

// memoryOverhead is what bodystream holds outside the memory budget: the Go runtime,
// pooled message and copy buffers idle between streams, each gRPC connection's read
// and write buffers, the metrics registry. Measured idle and under load in
// bench/RESULTS.md; this leaves room above it.
const memoryOverhead = 64 << 20

// setMemoryLimit gives the Go runtime a soft memory limit of the budget plus
// memoryOverhead, so that the collector works harder, rather than the heap growing,
// when the garbage of many streams' messages approaches what the budget promises.
// GOMEMLIMIT, when set, is the operator's choice and wins; a budget of 0 (unlimited)
// sets no limit. It returns the limit in force (math.MaxInt64: none).
func setMemoryLimit(cfg *config.Config, log *slog.Logger) int64 {
	if v := os.Getenv("GOMEMLIMIT"); v != "" {
		limit := debug.SetMemoryLimit(-1)
		log.Info("Go memory limit from GOMEMLIMIT", "GOMEMLIMIT", v, "bytes", limit)
		return limit
	}
	budget := int64(cfg.Memory.Budget)
	if budget <= 0 {
		log.Info("no Go memory limit: memory.budget is 0 (unlimited)")
		return debug.SetMemoryLimit(-1)
	}
	limit := budget + memoryOverhead
	if budget > math.MaxInt64-memoryOverhead {
		limit = math.MaxInt64
	}
	debug.SetMemoryLimit(limit)
	log.Info("Go memory limit from memory.budget", "limit", humanize.IBytes(uint64(limit)),
		"budget", humanize.IBytes(uint64(budget)), "overhead", humanize.IBytes(memoryOverhead))
	return limit
}
