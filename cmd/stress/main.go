// Command stress drives the real stack (Envoy 1.40, bodystream, echo) under CPU
// starvation with random uploads, and fails if any body reached the upstream or the
// client cut short yet ended as if whole, if any invariant inside bodystream broke,
// or if the race detector spoke. `make stress` runs it; bench/README.md explains it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"syscall"

	"github.com/dustin/go-humanize"

	"github.com/bodystream/bodystream/bench"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	failed, err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "stress:", err)
		}
		os.Exit(2)
	}
	if failed {
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) (failed bool, err error) {
	o := bench.StressOptions{Progress: stdout}
	fs := flag.NewFlagSet("stress", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.DurationVar(&o.Duration, "time", 0, "how long new uploads start (default 10m)")
	fs.IntVar(&o.Workers, "workers", 0, "uploads in flight at once (default 6)")
	fs.IntVar(&o.Busy, "busy", runtime.NumCPU(), "CPU-bound busy loops beside the stack")
	fs.BoolVar(&o.Race, "race", true, "build bodystream and the echo with the race detector")
	fs.IntVar(&o.GOMAXPROCS, "gomaxprocs", 1, "bodystream's GOMAXPROCS")
	maxSize := fs.String("max-size", "16MiB", "largest body drawn")
	fs.Uint64Var(&o.Seed, "seed", 0, "seed of the draw, to repeat a run (default from the clock)")
	fs.StringVar(&o.Out, "out", "", "directory for logs, stress.json and forensics (default bench/out/stress-TIME)")
	fs.StringVar(&o.Envoy, "envoy", "", "Envoy 1.40 binary (default $ENVOY or .tools/)")
	fs.DurationVar(&o.ProgressEvery, "progress", 0, "interval of the progress line (default 30s)")
	fs.DurationVar(&o.SoakEvery, "soak-every", 0, "sample RSS, goroutines and budget at this interval and fail on drift (make soak)")
	if err := fs.Parse(args); err != nil {
		return false, err
	}
	if fs.NArg() > 0 {
		return false, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	size, err := humanize.ParseBytes(*maxSize)
	if err != nil || size == 0 {
		return false, fmt.Errorf("-max-size %q: want a size such as 16MiB", *maxSize)
	}
	o.MaxSize = int64(size)
	report, err := bench.Stress(ctx, o)
	if err != nil {
		return false, err
	}
	fmt.Fprint(stdout, report.Summary())
	return report.Failed(), nil
}
