package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/bodystream/bodystream/config"
	"github.com/bodystream/bodystream/internal/harness"
	_ "github.com/bodystream/bodystream/stages" // the stage kinds config.Load checks
)

// Result is one scenario's measurement.
type Result struct {
	Scenario Scenario `json:"scenario"`
	Title    string   `json:"title"`
	Round    int      `json:"round"`   // 1, or which of -repeat's rounds
	Started  string   `json:"started"` // RFC 3339
	// LoadStart and LoadEnd bound the load on the sampling clock (seconds).
	LoadStart float64 `json:"load_start"`
	LoadEnd   float64 `json:"load_end"`

	Uploads    []UploadResult `json:"uploads"`
	Bytes      int64          `json:"bytes"`      // request bytes sent, all uploads
	WireBytes  int64          `json:"wire_bytes"` // response bytes received before decoding
	Throughput float64        `json:"throughput"` // request bytes per second of load
	P50        float64        `json:"p50"`        // upload latency, seconds
	P99        float64        `json:"p99"`
	Errors     int            `json:"errors"`
	// Refused counts uploads bodystream turned away cleanly (503 with retry-after,
	// before the upstream saw them); Verified is the request bytes of the uploads
	// that came back byte-exact, which throughput counts.
	Refused  int   `json:"refused"`
	Verified int64 `json:"verified_bytes"`
	// UpstreamRequests is how many requests Envoy sent the echo (-1: unknown), and
	// LeakedRefusals how many refused uploads that count shows reached it anyway;
	// each is also an error.
	UpstreamRequests int64 `json:"upstream_requests"`
	LeakedRefusals   int   `json:"leaked_refusals,omitempty"`
	// Budget is bodystream's memory.budget in the scenario (0: no bodystream, or
	// unlimited).
	Budget int64 `json:"budget,omitempty"`
	// OtherCPU is CPU seconds the machine spent during the load outside the sampled
	// processes: other work that competed with the scenario for the CPUs.
	OtherCPU float64 `json:"other_cpu"`
	// Ratio is bytes sent over bytes received from the echo, which returns what the
	// upstream got: the compression ratio of gzip scenarios, 1 for identity.
	Ratio float64 `json:"ratio"`

	Processes []ProcessSummary `json:"processes"`
	// EnvoyPeakAllocated and EnvoyPeakHeap are the largest server.memory_allocated and
	// server.memory_heap_size sampled during the load.
	EnvoyPeakAllocated int64             `json:"envoy_peak_allocated"`
	EnvoyPeakHeap      int64             `json:"envoy_peak_heap"`
	EnvoyStats         map[string]int64  `json:"envoy_stats,omitempty"` // counters added by the scenario
	Series             []Series          `json:"series"`
	EnvoyMemory        []EnvoyPoint      `json:"envoy_memory"`
	SampleErrors       []string          `json:"sample_errors,omitempty"`
	StackErrors        string            `json:"stack_errors,omitempty"`
	Notes              map[string]string `json:"notes,omitempty"`
}

// ProcessSummary is one process's figures during the load.
type ProcessSummary struct {
	Name    string `json:"name"`
	IdleRSS int64  `json:"idle_rss"` // first sample, before the load
	PeakRSS int64  `json:"peak_rss"` // largest sample during the load
	MeanRSS int64  `json:"mean_rss"` // mean of the samples during the load
	// PeakAnon is the largest RssAnon during the load: the process's own memory,
	// without the pages of its program file (about 50 MiB of Envoy's RSS).
	PeakAnon int64   `json:"peak_anon"`
	HWM      int64   `json:"hwm"` // the kernel's peak (VmHWM), start-up included
	CPU      float64 `json:"cpu"` // CPU seconds during the load
	// CPUPerGiB is CPU seconds per GiB uploaded.
	CPUPerGiB float64 `json:"cpu_per_gib"`
}

// processOrder is the order processes appear in tables and charts.
var processOrder = []string{"envoy", "bodystream", "seed-server", "echo", clientProcess}

// clientProcess names the bench's own process, which generates, sends, receives and
// verifies every byte.
const clientProcess = "client"

// runner runs scenarios one after another.
type runner struct {
	opts   *Options
	root   string
	envoy  string
	bin    string // bodystream and echo, built once for all scenarios
	self   string // this executable, for the seed-server subcommand
	stderr io.Writer
	status *progress
}

// runScenario runs one scenario on a fresh stack (or the attached one) and measures it.
func (r *runner) runScenario(ctx context.Context, index int, sc Scenario) (*Result, error) {
	res := &Result{Scenario: sc, Title: sc.Title(), Started: time.Now().Format(time.RFC3339)}
	target, adminURL, pids := r.opts.Target, r.opts.Admin, r.opts.Pids
	var st *harness.Stack
	if target == "" {
		var err error
		st, err = r.startStack(ctx, index, sc)
		if err != nil {
			return nil, err
		}
		defer func() {
			if err := st.Stop(); err != nil {
				res.StackErrors = err.Error()
			}
		}()
		target, adminURL = st.URL, st.AdminURL
		if !sc.Seed {
			budget, err := r.budget(sc)
			if err != nil {
				return nil, err
			}
			res.Budget = budget
		}
		pids = map[string]int{}
		for _, p := range st.Processes() {
			pids[p.Name] = p.Pid()
		}
	}
	// The bench itself: its CPU is the client's share of the machine.
	pids = maps.Clone(pids)
	pids[clientProcess] = os.Getpid()
	names := orderedNames(pids)

	var admin *harness.Admin
	var before map[string]int64
	if adminURL != "" {
		admin = harness.NewAdmin(adminURL)
		defer admin.Close()
		var err error
		if before, err = admin.Stats(ctx, statsFilter); err != nil {
			return nil, fmt.Errorf("envoy stats: %w", err)
		}
	}

	smp := newSampler(r.opts.Interval, names, pids, admin)
	if st != nil {
		smp.pidOf = func(name string) int {
			if p := st.Process(name); p != nil {
				return p.Pid()
			}
			return pids[name]
		}
	}
	sampleCtx, stopSampling := context.WithCancel(ctx)
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		smp.run(sampleCtx)
	}()
	// A few idle samples first, so that the chart shows where each process starts.
	select {
	case <-time.After(r.opts.Interval * 3):
	case <-ctx.Done():
	}

	l := &load{url: strings.TrimSuffix(target, "/") + sc.Route + "/echo", scenario: sc, file: r.opts.File, clock: smp.since}
	r.status.begin(index, sc, l, smp)
	loadCtx, cancel := context.WithTimeout(ctx, r.opts.Timeout)
	busyStart, busyErr := machineBusy()
	loadStart := time.Now()
	if sc.Replicas > 0 && st != nil {
		res.Uploads, res.Notes = runDrill(loadCtx, st, sc, smp.since)
	} else {
		res.Uploads = l.run(loadCtx)
	}
	loadEnd := time.Now()
	busyEnd, busyErr2 := machineBusy()
	cancel()
	r.status.end()
	// A few more: what the processes keep once the uploads are over.
	select {
	case <-time.After(r.opts.Interval * 3):
	case <-ctx.Done():
	}
	stopSampling()
	<-sampled

	if admin != nil && ctx.Err() == nil {
		after, err := admin.Stats(ctx, statsFilter)
		if err != nil {
			res.SampleErrors = append(res.SampleErrors, fmt.Sprintf("envoy stats: %v", err))
		} else {
			res.EnvoyStats = statsDelta(before, after)
		}
	}
	var sampleErrs []error
	res.Series, res.EnvoyMemory, sampleErrs = smp.result()
	for _, err := range sampleErrs {
		res.SampleErrors = append(res.SampleErrors, err.Error())
	}
	res.LoadStart, res.LoadEnd = smp.since(loadStart), smp.since(loadEnd)
	summarize(res)
	if err := errors.Join(busyErr, busyErr2); err != nil {
		res.SampleErrors = append(res.SampleErrors, err.Error())
	} else {
		// The processes' CPU is taken over a slightly wider window (the samples
		// around the load), so a quiet machine can come out a little negative.
		res.OtherCPU = busyEnd - busyStart
		for _, p := range res.Processes {
			res.OtherCPU -= p.CPU
		}
		res.OtherCPU = max(res.OtherCPU, 0)
	}
	if ctx.Err() != nil {
		return res, errInterrupted
	}
	return res, nil
}

func (r *runner) startStack(ctx context.Context, index int, sc Scenario) (*harness.Stack, error) {
	dir, err := filepath.Abs(filepath.Join(r.opts.Out, "stacks", fmt.Sprintf("%02d-%s", index+1, slug(sc.Title()))))
	if err != nil {
		return nil, err
	}
	if err := os.RemoveAll(dir); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	opts := harness.Options{
		Root:         r.root,
		Envoy:        r.envoy,
		BinDir:       r.bin,
		Dir:          dir,
		Concurrency:  r.opts.EnvoyConcurrency,
		NoBodystream: sc.Seed,
		Replicas:     sc.Replicas,
	}
	if sc.EnvoyConfig != "" {
		opts.EnvoyConfig = r.resolve(sc.EnvoyConfig)
	}
	if r.opts.Windows.set() {
		src := opts.EnvoyConfig
		if src == "" {
			src = filepath.Join(r.root, "resources", "envoy.yaml")
		}
		opts.EnvoyConfig = filepath.Join(dir, "envoy-windows.yaml")
		if err := applyWindows(src, opts.EnvoyConfig, r.opts.Windows); err != nil {
			return nil, fmt.Errorf("%s: -windows: %w", sc.Title(), err)
		}
	}
	if sc.BodystreamConfig != "" {
		opts.BodystreamArgs = []string{"-config", r.resolve(sc.BodystreamConfig)}
	}
	if sc.Replicas > 0 {
		opts.BodystreamClusterFields = r.resolve(drillClusterFields)
		opts.BodystreamArgs = append(opts.BodystreamArgs, drillBodystreamArgs...)
	}
	if sc.Seed {
		opts.Extras = []harness.Extra{{Name: "seed-server", Path: r.self, Args: []string{"seed-server", "-listen", "127.0.0.1:0"}, Cluster: "seed"}}
	}
	st, err := harness.Start(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("%s: start the stack: %w", sc.Title(), err)
	}
	return st, nil
}

// budget reads bodystream's memory.budget from the configuration the scenario runs.
func (r *runner) budget(sc Scenario) (int64, error) {
	path := ""
	if sc.BodystreamConfig != "" {
		path = r.resolve(sc.BodystreamConfig)
	}
	cfg, err := config.Load(path)
	if err != nil {
		return 0, fmt.Errorf("%s: bodystream's memory budget: %w", sc.Title(), err)
	}
	return int64(cfg.Memory.Budget), nil
}

// resolve returns path, made absolute against the module root.
func (r *runner) resolve(path string) string {
	if filepath.IsAbs(path) {
		return path
	}
	return filepath.Join(r.root, path)
}

// orderedNames returns the keys of m, the processes of processOrder first.
func orderedNames[V any](m map[string]V) []string {
	var names []string
	for _, name := range processOrder {
		if _, ok := m[name]; ok {
			names = append(names, name)
		}
	}
	var others []string
	for name := range m {
		if !slices.Contains(processOrder, name) {
			others = append(others, name)
		}
	}
	slices.Sort(others)
	return append(names, others...)
}

// summarize computes a result's figures from its uploads and samples.
func summarize(res *Result) {
	var latencies []float64
	for _, u := range res.Uploads {
		res.Bytes += u.Sent
		res.WireBytes += u.Wire
		switch {
		case u.Err != "":
			res.Errors++
		case u.Refused:
			res.Refused++
		default:
			res.Verified += u.Sent
			latencies = append(latencies, u.Seconds)
		}
	}
	res.UpstreamRequests = -1
	if n, ok := res.EnvoyStats["cluster.echo.upstream_rq_total"]; ok {
		res.UpstreamRequests = n
		// Each verified upload went upstream once and a refused one never; a failed
		// one may have. More requests than verified and failed uploads together
		// means a refusal came after the upstream saw the request.
		ok := len(res.Uploads) - res.Errors - res.Refused
		if leaked := int(n) - ok - res.Errors; leaked > 0 && res.Refused > 0 {
			res.LeakedRefusals = min(leaked, res.Refused)
			res.Errors += res.LeakedRefusals
		}
	}
	if d := res.LoadEnd - res.LoadStart; d > 0 {
		res.Throughput = float64(res.Verified) / d
	}
	if res.WireBytes > 0 {
		res.Ratio = float64(res.Verified) / float64(res.WireBytes)
	}
	slices.Sort(latencies)
	res.P50, res.P99 = percentile(latencies, 50), percentile(latencies, 99)

	gib := float64(res.Bytes) / (1 << 30)
	for _, s := range res.Series {
		ps := ProcessSummary{Name: s.Process, HWM: s.HWM}
		var sum, n int64
		var cpuStart, cpuEnd float64
		for i, p := range s.Points {
			if i == 0 {
				ps.IdleRSS = p.RSS
			}
			if p.T <= res.LoadStart {
				cpuStart = p.CPU
				continue
			}
			// The load's samples and the first one after it: a load shorter than
			// the sampling period has that one only.
			ps.PeakRSS = max(ps.PeakRSS, p.RSS)
			ps.PeakAnon = max(ps.PeakAnon, p.Anon)
			sum += p.RSS
			n++
			cpuEnd = p.CPU
			if p.T > res.LoadEnd {
				break
			}
		}
		if n > 0 {
			ps.MeanRSS = sum / n
		}
		ps.CPU = cpuEnd - cpuStart
		if gib > 0 {
			ps.CPUPerGiB = ps.CPU / gib
		}
		res.Processes = append(res.Processes, ps)
	}
	for _, p := range res.EnvoyMemory {
		if p.T <= res.LoadStart {
			continue
		}
		res.EnvoyPeakAllocated = max(res.EnvoyPeakAllocated, p.Allocated)
		res.EnvoyPeakHeap = max(res.EnvoyPeakHeap, p.HeapSize)
		if p.T > res.LoadEnd {
			break
		}
	}
}

// percentile returns the nearest-rank percentile p of sorted values, 0 if none.
func percentile(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(float64(len(sorted))*p/100+0.999999) - 1
	return sorted[min(max(rank, 0), len(sorted)-1)]
}

var unsafeChars = regexp.MustCompile(`[^A-Za-z0-9.-]+`)

// slug turns a title into a file name: "fds-gzip h1 10×1GiB" → "fds-gzip-h1-10x1GiB".
func slug(title string) string {
	return strings.Trim(unsafeChars.ReplaceAllString(strings.ReplaceAll(title, "×", "x"), "-"), "-")
}

// process returns the summary of the named process, if the scenario had it.
func (res *Result) process(name string) (ProcessSummary, bool) {
	i := slices.IndexFunc(res.Processes, func(p ProcessSummary) bool { return p.Name == name })
	if i < 0 {
		return ProcessSummary{}, false
	}
	return res.Processes[i], true
}
