package app

import (
	"log/slog"
	"runtime/debug"
	"testing"

	"github.com/bodystream/bodystream/config"
)

func TestSetMemoryLimit(t *testing.T) {
	before := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(before) })
	log := slog.New(slog.DiscardHandler)
	cases := []struct {
		name, env string
		budget    config.ByteSize
		want      int64
	}{
		{"from the budget", "", 256 << 20, 256<<20 + memoryOverhead},
		{"GOMEMLIMIT wins", "1GiB", 256 << 20, 1 << 30},
		{"unlimited budget sets none", "", 0, before},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("GOMEMLIMIT", tc.env)
			// The runtime read GOMEMLIMIT at start; stand in for that.
			debug.SetMemoryLimit(before)
			if tc.env != "" {
				debug.SetMemoryLimit(1 << 30)
			}
			cfg := &config.Config{Memory: config.Memory{Budget: tc.budget}}
			if got := setMemoryLimit(cfg, log); got != tc.want {
				t.Errorf("limit %d, want %d", got, tc.want)
			}
			if got := debug.SetMemoryLimit(-1); got != tc.want {
				t.Errorf("runtime limit %d, want %d", got, tc.want)
			}
		})
	}
}
