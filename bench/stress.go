package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/dustin/go-humanize"

	"github.com/bodystream/bodystream/internal/harness"
)

// StressOptions configure a stress run: the real stack under CPU starvation, random
// uploads until Duration is over, every one checked for a body passed off as whole.
type StressOptions struct {
	// Duration is how long new uploads start (default 10 minutes).
	Duration time.Duration
	// Workers is how many uploads are in flight at once (default 6).
	Workers int
	// Busy is how many CPU-bound busy loops compete with the stack (default: one per
	// core).
	Busy int
	// Race builds bodystream and the echo with the race detector.
	Race bool
	// GOMAXPROCS is bodystream's (default 1).
	GOMAXPROCS int
	// MaxSize is the largest body drawn (default 16 MiB).
	MaxSize int64
	// Seed makes the draw repeatable; 0 takes one from the clock.
	Seed uint64
	// Out receives the stack's logs, stress.json and one forensics file per bad
	// upload (default bench/out/stress-<time>).
	Out string
	// Root is the module root; Envoy the binary ($ENVOY or .tools/ if empty).
	Root, Envoy string
	// SoakEvery, when set, makes the run a soak: bodystream's and Envoy's RSS,
	// bodystream's goroutines and budget are sampled at this interval, reported per
	// minute, and the run fails when any drifts past its bound (soak.go) or when the
	// budget is not all given back once the uploads have ended.
	SoakEvery time.Duration
	// Progress, if set, gets a line every ProgressEvery.
	Progress      io.Writer
	ProgressEvery time.Duration
}

func (o *StressOptions) defaults() error {
	if o.Duration <= 0 {
		o.Duration = 10 * time.Minute
	}
	if o.Workers <= 0 {
		o.Workers = 6
	}
	if o.Busy < 0 {
		return fmt.Errorf("busy loops: %d is negative", o.Busy)
	}
	if o.GOMAXPROCS <= 0 {
		o.GOMAXPROCS = 1
	}
	if o.MaxSize <= 0 {
		o.MaxSize = 16 << 20
	}
	if o.Seed == 0 {
		o.Seed = uint64(time.Now().UnixNano())
	}
	if o.ProgressEvery <= 0 {
		o.ProgressEvery = 30 * time.Second
	}
	var err error
	if o.Root == "" {
		if o.Root, err = harness.FindRoot(); err != nil {
			return err
		}
	}
	if o.Envoy == "" {
		if o.Envoy, err = harness.FindEnvoy(o.Root); err != nil {
			return err
		}
	}
	if o.Out == "" {
		o.Out = filepath.Join(o.Root, "bench", "out", "stress-"+time.Now().Format("20060102-150405"))
	}
	return os.MkdirAll(o.Out, 0o755)
}

// StressReport is a run's record, written to stress.json.
type StressReport struct {
	Seed        uint64         `json:"seed"`
	Started     string         `json:"started"`
	Seconds     float64        `json:"seconds"`
	Options     StressOptions  `json:"options"`
	Uploads     int            `json:"uploads"`
	Outcomes    map[string]int `json:"outcomes"`
	Statuses    map[string]int `json:"failure_statuses"`
	BytesSent   int64          `json:"bytes_sent"`
	Minutes     []SoakMinute   `json:"minutes,omitempty"`
	MaxLoadAvg  float64        `json:"max_load_average"`
	Problems    []string       `json:"problems,omitempty"`
	Bad         []stressUpload `json:"bad,omitempty"`
	StackErrors string         `json:"stack_errors,omitempty"`
	Details     []stressUpload `json:"uploads_detail"`
}

// Failed reports whether the run found a body passed off as whole, a broken
// invariant, a data race or a crash.
func (r *StressReport) Failed() bool { return len(r.Bad) > 0 || len(r.Problems) > 0 }

// Stress runs the stack under load until o.Duration has passed or ctx ends, then
// checks every upload against what each process logged about it.
func Stress(ctx context.Context, o StressOptions) (*StressReport, error) {
	if err := o.defaults(); err != nil {
		return nil, err
	}
	report := &StressReport{Seed: o.Seed, Started: time.Now().Format(time.RFC3339), Options: o,
		Outcomes: map[string]int{}, Statuses: map[string]int{}}
	st, err := harness.Start(ctx, harness.Options{
		Root:           o.Root,
		Envoy:          o.Envoy,
		EnvoyConfig:    filepath.Join(o.Root, "resources", "stress", "envoy.yaml"),
		BodystreamArgs: []string{"-config", filepath.Join(o.Root, "resources", "stress", "bodystream.yaml"), "-log-level", "info"},
		BodystreamEnv:  []string{"GOMAXPROCS=" + strconv.Itoa(o.GOMAXPROCS)},
		EchoArgs:       []string{"-digest"},
		Race:           o.Race,
		Dir:            o.Out,
		Concurrency:    2,
	})
	if err != nil {
		return nil, err
	}
	stopBusy, err := startBusyLoops(o.Busy)
	if err != nil {
		st.Stop()
		return nil, err
	}

	var soak *soakSampler
	stopSoak := func() {}
	if o.SoakEvery > 0 {
		soak = &soakSampler{bodystreamPid: st.Process("bodystream").Pid(), envoyPid: st.Process("envoy").Pid(),
			metricsURL: "http://" + st.MetricsAddr + "/metrics", start: time.Now()}
		sampleCtx, cancel := context.WithCancel(ctx)
		var wg sync.WaitGroup
		wg.Go(func() { soak.run(sampleCtx, o.SoakEvery) })
		stopSoak = func() { cancel(); wg.Wait() }
	}
	start := time.Now()
	uploads := runStressLoad(ctx, st.URL, o, report)
	report.Seconds = time.Since(start).Seconds()
	stopBusy()
	stopSoak()
	if soak != nil {
		report.Minutes = soakMinutes(soak.samples, uploads, soak.start)
		report.Problems = append(report.Problems, soakDrift(report.Minutes)...)
		report.Problems = append(report.Problems, soak.settle(ctx)...)
		for _, e := range soak.errs {
			report.Problems = append(report.Problems, "soak sample: "+e)
		}
	}
	if err := st.Stop(); err != nil {
		report.StackErrors = err.Error()
	}

	logs, err := readStressLogs(
		st.Process("envoy").LogPath, st.Process("bodystream").LogPath, st.Process("echo").LogPath)
	if err != nil {
		return nil, fmt.Errorf("read the stack's logs: %w", err)
	}
	report.Problems = append(report.Problems, logs.problems...)
	failures := filepath.Join(o.Out, "failures")
	for i := range uploads {
		u := &uploads[i]
		checkUpstream(u, logs)
		report.Outcomes[u.Outcome]++
		report.BytesSent += u.Sent
		if u.Outcome == outcomeFailed {
			report.Statuses[failureKind(*u)]++
		}
		// A 200 cut short by a reset the client did not ask for is a clean failure,
		// but a curious one: its forensics are kept beside the bad uploads'.
		cutShort := u.Outcome == outcomeFailed && u.Status == 200
		if u.Outcome == outcomeBad || cutShort {
			if u.Outcome == outcomeBad {
				report.Bad = append(report.Bad, *u)
			}
			name := u.Plan.ID + ".txt"
			if cutShort {
				name = "reset-" + name
			}
			if err := os.MkdirAll(failures, 0o755); err != nil {
				return nil, err
			}
			if err := os.WriteFile(filepath.Join(failures, name), []byte(forensics(*u, logs)), 0o644); err != nil {
				return nil, err
			}
		}
	}
	report.Uploads = len(uploads)
	report.Details = uploads
	return report, writeStressReport(o.Out, report)
}

// runStressLoad keeps o.Workers uploads in flight until the time is up.
func runStressLoad(ctx context.Context, url string, o StressOptions, report *StressReport) []stressUpload {
	start := time.Now()
	ctx, stop := context.WithTimeout(ctx, o.Duration)
	defer stop()
	client := newStressClient(url)
	defer client.close()

	var (
		mu      sync.Mutex
		uploads []stressUpload
		next    int
		rng     = rand.New(rand.NewPCG(o.Seed, 0))
	)
	draw := func() (stressPlan, bool) {
		mu.Lock()
		defer mu.Unlock()
		if ctx.Err() != nil {
			return stressPlan{}, false
		}
		p := drawPlan(rng, o.Seed, next, o.MaxSize)
		next++
		return p, true
	}
	var wg sync.WaitGroup
	for range o.Workers {
		wg.Go(func() {
			for {
				p, ok := draw()
				if !ok {
					return
				}
				// The run's deadline ends the drawing, not the uploads in flight:
				// each finishes on its own, so that none is cut by the clock.
				u := client.do(context.WithoutCancel(ctx), p)
				mu.Lock()
				uploads = append(uploads, u)
				mu.Unlock()
			}
		})
	}

	done := make(chan struct{})
	var progress sync.WaitGroup
	progress.Go(func() {
		tick := time.NewTicker(min(o.ProgressEvery, 5*time.Second))
		defer tick.Stop()
		last := time.Now()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
			}
			load := loadAverage()
			mu.Lock()
			report.MaxLoadAvg = max(report.MaxLoadAvg, load)
			counts := map[string]int{}
			for _, u := range uploads {
				counts[u.Outcome]++
			}
			n := len(uploads)
			mu.Unlock()
			if o.Progress != nil && time.Since(last) >= o.ProgressEvery {
				last = time.Now()
				fmt.Fprintf(o.Progress, "stress: %s  %d uploads: %d ok, %d failed, %d aborted, %d bad  load %.1f\n",
					time.Since(start).Round(time.Second), n, counts[outcomeOK], counts[outcomeFailed],
					counts[outcomeAborted], counts[outcomeBad], load)
			}
		}
	})
	wg.Wait()
	close(done)
	progress.Wait()
	slices.SortFunc(uploads, func(a, b stressUpload) int { return strings.Compare(a.Plan.ID, b.Plan.ID) })
	return uploads
}

// failureKind groups a failed upload for the report: its status, or the kind of
// transport error.
func failureKind(u stressUpload) string {
	if u.Status != 0 && u.Status != 200 {
		return strconv.Itoa(u.Status)
	}
	switch {
	case strings.HasPrefix(u.Err, "request:"):
		return "request error"
	default:
		return "response error"
	}
}

// startBusyLoops starts n processes that each spin on a core, and returns what
// stops them.
func startBusyLoops(n int) (stop func(), err error) {
	var procs []*exec.Cmd
	stop = func() {
		for _, p := range procs {
			p.Process.Kill()
			p.Wait()
		}
	}
	for range n {
		cmd := exec.Command("/bin/sh", "-c", "while :; do :; done")
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			stop()
			return nil, fmt.Errorf("busy loop: %w", err)
		}
		procs = append(procs, cmd)
	}
	return stop, nil
}

// loadAverage is the one-minute load average, 0 where /proc has none.
func loadAverage() float64 {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f, _ := strconv.ParseFloat(strings.Fields(string(data))[0], 64)
	return f
}

func writeStressReport(dir string, r *StressReport) error {
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "stress.json"), data, 0o644)
}

// Summary is the report as a few lines for a terminal.
func (r *StressReport) Summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "stress: %d uploads in %s (seed %d), %s sent, load average up to %.1f\n",
		r.Uploads, time.Duration(r.Seconds*float64(time.Second)).Round(time.Second), r.Seed,
		humanize.IBytes(uint64(r.BytesSent)), r.MaxLoadAvg)
	fmt.Fprintf(&b, "  outcomes: %d ok, %d failed cleanly, %d aborted by the client, %d bad\n",
		r.Outcomes[outcomeOK], r.Outcomes[outcomeFailed], r.Outcomes[outcomeAborted], r.Outcomes[outcomeBad])
	for _, mode := range []string{"fds", "streamed", "buffered"} {
		counts := map[string]int{}
		for _, u := range r.Details {
			if u.Plan.Mode == mode {
				counts[u.Outcome]++
			}
		}
		fmt.Fprintf(&b, "  %-9s %d ok, %d failed, %d aborted, %d bad\n", mode+":", counts[outcomeOK], counts[outcomeFailed], counts[outcomeAborted], counts[outcomeBad])
	}
	if len(r.Statuses) > 0 {
		keys := make([]string, 0, len(r.Statuses))
		for k := range r.Statuses {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		var parts []string
		for _, k := range keys {
			parts = append(parts, fmt.Sprintf("%s ×%d", k, r.Statuses[k]))
		}
		fmt.Fprintf(&b, "  clean failures: %s\n", strings.Join(parts, ", "))
	}
	if len(r.Minutes) > 0 {
		b.WriteString(soakTable(r.Minutes))
	}
	for _, p := range r.Problems {
		fmt.Fprintf(&b, "  PROBLEM %s\n", p)
	}
	for _, u := range r.Bad {
		fmt.Fprintf(&b, "  BAD %s %s: %s\n", u.Plan.ID, u.Plan.path(), u.Err)
	}
	if r.StackErrors != "" {
		fmt.Fprintf(&b, "  stack: %s\n", r.StackErrors)
	}
	if r.Failed() {
		fmt.Fprintf(&b, "FAIL: forensics in %s\n", filepath.Join(r.Options.Out, "failures"))
	} else {
		fmt.Fprintf(&b, "PASS: no body passed off as whole, no broken invariant, no race\n")
	}
	return b.String()
}
