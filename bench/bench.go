// Package bench measures bodystream behind a real Envoy the way its users do: many
// concurrent large uploads, with an eye on each process's memory. It starts Envoy
// 1.40, bodystream and the echo upstream on free loopback ports for each scenario (or
// attaches to a running stack), fires the uploads, verifies every response byte
// against what was sent, samples RSS and CPU from /proc and Envoy's admin, and
// writes a table, a JSON file of every sample and an SVG chart.
//
// cmd/bench is the command; README.md in this directory says how to read its report.
package bench

import (
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"time"

	"github.com/bodystream/bodystream/internal/harness"
)

// Main is the whole bench command: it runs the scenarios args choose until they end
// or ctx is cancelled, then writes the report. It returns an error when an upload
// failed verification, so that a wrong byte fails the run.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 {
		switch args[0] {
		case "seed-server":
			return runSeedServer(ctx, args[1:], stderr)
		case "chart":
			return redrawChart(args[1:], stderr)
		case "charts":
			return drawRecordedCharts(args[1:], stdout, stderr)
		}
	}
	opts, err := parseOptions(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	if opts.List {
		for i, sc := range opts.Scenarios {
			fmt.Fprintf(stdout, "%2d  %-34s %s\n", i+1, sc.Title(), sc.About)
		}
		return nil
	}

	if opts.CPUProfile != "" {
		f, err := os.Create(opts.CPUProfile)
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			f.Close()
			return err
		}
		defer func() {
			pprof.StopCPUProfile()
			f.Close()
		}()
	}

	r := &runner{opts: opts, stderr: stderr, status: newProgress(stderr)}
	if err := r.prepare(ctx); err != nil {
		return err
	}
	rep := &Report{
		Command:      strings.Join(append([]string{"bench"}, args...), " "),
		Started:      time.Now().Format(time.RFC3339),
		Machine:      describeMachine(),
		EnvoyWorkers: opts.EnvoyConcurrency,
		Interval:     opts.Interval.String(),
	}
	if opts.Windows.set() {
		rep.Windows = &opts.Windows
	}
	switch {
	case r.envoy != "":
		rep.Envoy = envoyVersion(ctx, r.envoy)
	case opts.Admin != "":
		admin := harness.NewAdmin(opts.Admin)
		info, err := admin.ServerInfo(ctx)
		admin.Close()
		if err != nil {
			return fmt.Errorf("-admin: %w", err)
		}
		rep.Envoy, rep.EnvoyWorkers = info.Version, info.Workers
	default:
		rep.Envoy, rep.EnvoyWorkers = "unknown (attached without -admin)", 0
	}
	if r.root != "" {
		rep.Revision = gitRevision(ctx, r.root)
	}
	runErr := r.runAll(ctx, rep)
	if err := writeOutputs(opts.Out, rep, stdout); err != nil {
		return errors.Join(runErr, err)
	}
	if runErr != nil {
		return runErr
	}
	var failed, stackFailed int
	for _, res := range rep.Results {
		failed += res.Errors
		if res.StackErrors != "" {
			stackFailed++
		}
	}
	switch {
	case failed > 0:
		return fmt.Errorf("%d uploads failed; see the report", failed)
	case stackFailed > 0:
		return fmt.Errorf("a process of %d scenarios exited or stopped badly; see the report", stackFailed)
	}
	return nil
}

// prepare finds what a fresh stack needs (module root, Envoy, this executable for
// the seed-server) and builds bodystream and echo once, unless the bench attaches to
// a running stack.
func (r *runner) prepare(ctx context.Context) error {
	if err := os.MkdirAll(r.opts.Out, 0o755); err != nil {
		return err
	}
	most := 0
	for _, sc := range r.opts.Scenarios {
		most = max(most, sc.Concurrency)
	}
	if err := raiseFileLimit(most); err != nil {
		return err
	}
	if r.opts.Target != "" {
		return nil
	}
	var err error
	if r.root, err = harness.FindRoot(); err != nil {
		return err
	}
	if r.envoy = r.opts.Envoy; r.envoy == "" {
		if r.envoy, err = harness.FindEnvoy(r.root); err != nil {
			return err
		}
	}
	if r.self, err = os.Executable(); err != nil {
		return fmt.Errorf("the seed-server runs as this executable: %w", err)
	}
	if r.bin = r.opts.Bin; r.bin != "" {
		return nil
	}
	if r.bin, err = filepath.Abs(filepath.Join(r.opts.Out, "bin")); err != nil {
		return err
	}
	fmt.Fprintf(r.stderr, "building bodystream and echo into %s\n", r.bin)
	return harness.Build(ctx, r.root, r.bin, false)
}

// runAll runs every scenario, round after round, adding the results to rep. It stops
// at the first stack that does not start, and when ctx ends.
func (r *runner) runAll(ctx context.Context, rep *Report) error {
	opts := r.opts
	total := len(opts.Scenarios) * opts.Repeat
	r.status.total = total
	for round := 1; round <= opts.Repeat; round++ {
		for i, sc := range opts.Scenarios {
			n := (round-1)*len(opts.Scenarios) + i
			if opts.Settle > 0 && !waitIdle(ctx, opts.Settle) && ctx.Err() == nil {
				fmt.Fprintf(r.stderr, "the machine is still busy after %s; running anyway (see the \"other\" CPU column)\n", opts.Settle)
			}
			fmt.Fprintf(r.stderr, "[%d/%d] %s: %s\n", n+1, total, sc.Title(), sc.About)
			res, err := r.runScenario(ctx, n, sc)
			if res != nil {
				res.Round = round
				if opts.Repeat > 1 {
					res.Title = fmt.Sprintf("%s #%d", sc.Title(), round)
				}
				rep.Results = append(rep.Results, res)
				fmt.Fprintln(r.stderr, "       "+resultLine(res))
				for _, e := range errorSummary(res.Uploads, 3) {
					fmt.Fprintf(r.stderr, "       FAILED %s\n", e)
				}
			}
			if errors.Is(err, errInterrupted) || ctx.Err() != nil {
				rep.Interrupted = true
				return errInterrupted
			}
			if err != nil {
				// A stack that does not start says something about the setup, not
				// the load: stop rather than fail every scenario after it alike.
				return err
			}
		}
	}
	return nil
}

// resultLine is the one line printed as a scenario ends.
func resultLine(res *Result) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s in %s, %s/s", sizeName(res.Bytes), seconds(res.LoadEnd-res.LoadStart), sizeName(int64(res.Throughput)))
	for _, p := range res.Processes {
		fmt.Fprintf(&b, ", %s peak %s", p.Name, mib(p.PeakRSS))
	}
	if res.Errors > 0 {
		fmt.Fprintf(&b, ", %d FAILED", res.Errors)
	}
	return b.String()
}

// writeOutputs writes report.txt, results.json and memory.svg to dir, and the
// tables to stdout.
func writeOutputs(dir string, rep *Report, stdout io.Writer) error {
	var text strings.Builder
	if err := rep.writeText(&text); err != nil {
		return err
	}
	fmt.Fprint(stdout, "\n"+text.String())
	if err := os.WriteFile(filepath.Join(dir, "report.txt"), []byte(text.String()), 0o644); err != nil {
		return err
	}
	if err := writeFile(filepath.Join(dir, "results.json"), rep.writeJSON); err != nil {
		return err
	}
	if err := writeFile(filepath.Join(dir, "memory.svg"), func(w io.Writer) error { return writeSVG(w, chartTitle(rep), rep.Results) }); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "\nWrote %s, %s and %s\n", filepath.Join(dir, "report.txt"), filepath.Join(dir, "results.json"), filepath.Join(dir, "memory.svg"))
	return nil
}

func writeFile(path string, write func(io.Writer) error) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := write(f); err != nil {
		f.Close()
		return fmt.Errorf("%s: %w", path, err)
	}
	return f.Close()
}

// redrawChart is the subcommand "chart": the SVG of a results.json written before,
// e.g. after a change to the chart, without measuring again.
func redrawChart(args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench chart", flag.ContinueOnError)
	fs.SetOutput(stderr)
	in := fs.String("in", "bench/out/results.json", "results `file` of an earlier run")
	out := fs.String("out", "bench/out/memory.svg", "SVG `file` to write")
	if err := fs.Parse(args); err != nil {
		return err
	}
	rep, err := readReport(*in)
	if err != nil {
		return err
	}
	return writeFile(*out, func(w io.Writer) error { return writeSVG(w, chartTitle(rep), rep.Results) })
}

// drawRecordedCharts is the subcommand "charts" (make charts): for every run file
// recorded in -runs (NAME.json or NAME.json.gz, a results.json), the memory chart
// NAME.svg and the summary of peaks NAME-peaks.svg in -out. bench/RESULTS.md and the
// README embed these, so the figures and the charts come from the same runs.
func drawRecordedCharts(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench charts", flag.ContinueOnError)
	fs.SetOutput(stderr)
	runs := fs.String("runs", "bench/runs", "`directory` of recorded run files")
	out := fs.String("out", "bench/charts", "`directory` to write the charts to")
	if err := fs.Parse(args); err != nil {
		return err
	}
	files, err := filepath.Glob(filepath.Join(*runs, "*.json*"))
	if err != nil {
		return err
	}
	if len(files) == 0 {
		return fmt.Errorf("no run files (*.json, *.json.gz) in %s", *runs)
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	for _, file := range files {
		name, ok := runName(file)
		if !ok {
			continue
		}
		rep, err := readReport(file)
		if err != nil {
			return err
		}
		memory, peaks := filepath.Join(*out, name+".svg"), filepath.Join(*out, name+"-peaks.svg")
		if err := writeFile(memory, func(w io.Writer) error { return writeSVG(w, chartTitle(rep), rep.Results) }); err != nil {
			return err
		}
		title := fmt.Sprintf("Peak memory (RSS) per process and scenario — Envoy %s, %d CPUs, %s", shortVersion(rep.Envoy), rep.Machine.CPUs, rep.Revision)
		if err := writeFile(peaks, func(w io.Writer) error { return writePeaksSVG(w, title, rep.Results) }); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s: %s, %s\n", file, memory, peaks)
	}
	return nil
}

// runName is the chart name of a run file: its name without .json or .json.gz.
func runName(file string) (string, bool) {
	base := filepath.Base(file)
	for _, ext := range []string{".json.gz", ".json"} {
		if name, ok := strings.CutSuffix(base, ext); ok && name != "" {
			return name, true
		}
	}
	return "", false
}

// readReport reads a results.json, gzip-compressed when its name ends in .gz (as
// the recorded runs are, to keep the repository small).
func readReport(path string) (*Report, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var r io.Reader = f
	if strings.HasSuffix(path, ".gz") {
		zr, err := gzip.NewReader(f)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		defer zr.Close()
		r = zr
	}
	var rep Report
	if err := json.NewDecoder(r).Decode(&rep); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &rep, nil
}

func chartTitle(rep *Report) string {
	return fmt.Sprintf("Memory (RSS) over time, per process and scenario — Envoy %s, %d CPUs", shortVersion(rep.Envoy), rep.Machine.CPUs)
}

// shortVersion turns "9e55…/1.40.0/Clean/RELEASE/BoringSSL" into "1.40.0".
func shortVersion(v string) string {
	parts := strings.Split(v, "/")
	if len(parts) > 1 {
		return parts[1]
	}
	return v
}
