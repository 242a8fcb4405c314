// Package faults breaks things around bodystream behind a real Envoy 1.40 and checks
// what a user sees: a client that hangs up, an upstream that is down, resets or reads
// slowly, bodystream killed or drained, a stage too slow for Envoy's message timeout,
// a full archive, a pattern trickled across chunk boundaries, and 300 mixed uploads.
// Each test starts the stack it needs (race-built bodystream and echo), states the
// outcome (status, body, what reached the upstream, what is on disk), and then checks
// that nothing leaked: active streams 0, memory budget 0, goroutines back near their
// baseline, no temporary file, and no race, panic or broken invariant in the logs.
package faults

import (
	"context"
	"flag"
	"fmt"
	"os"
	"testing"

	"go.uber.org/goleak"

	"github.com/bodystream/bodystream/internal/harness"
)

// binDir holds bodystream and echo built with -race once for every test's stack; empty
// without Envoy, and then each test skips (or, under CI, fails) in RequireEnvoy.
var binDir, root string

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	var err error
	if root, err = harness.FindRoot(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	flag.Parse() // for testing.Short
	if _, err := harness.FindEnvoy(root); err == nil && !testing.Short() {
		if binDir, err = os.MkdirTemp("", "bodystream-faults-bin-"); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(binDir)
		if err := harness.Build(context.Background(), root, binDir, true); err != nil {
			fmt.Fprintln(os.Stderr, "faults:", err)
			return 1
		}
	}
	code := m.Run()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "faults: goroutines left:", err)
			code = 1
		}
	}
	return code
}
