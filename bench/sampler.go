package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/bodystream/bodystream/internal/harness"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat. Linux
// fixes it at 100 on every architecture Go supports; reading it needs sysconf, which
// needs cgo.
const clockTicks = 100

// procSample is one reading of a process.
type procSample struct {
	RSS  int64   // resident set size, bytes (VmRSS)
	Anon int64   // its anonymous part (RssAnon): heap and stacks, without mapped files such as the program's own code
	HWM  int64   // the kernel's own peak RSS since the process started (VmHWM), bytes
	CPU  float64 // user + system CPU seconds since the process started
}

// readProc reads /proc/<pid>/stat and /proc/<pid>/status.
func readProc(pid int) (procSample, error) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procSample{}, err
	}
	cpu, err := parseStatCPU(stat)
	if err != nil {
		return procSample{}, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return procSample{}, err
	}
	rss, err := parseStatusKB(status, "VmRSS")
	if err != nil {
		return procSample{}, fmt.Errorf("/proc/%d/status: %w", pid, err)
	}
	hwm, err := parseStatusKB(status, "VmHWM")
	if err != nil {
		return procSample{}, fmt.Errorf("/proc/%d/status: %w", pid, err)
	}
	anon, err := parseStatusKB(status, "RssAnon")
	if err != nil {
		return procSample{}, fmt.Errorf("/proc/%d/status: %w", pid, err)
	}
	return procSample{RSS: rss, Anon: anon, HWM: hwm, CPU: cpu}, nil
}

// parseStatCPU returns utime + stime in seconds from the text of /proc/<pid>/stat.
// The command name in parentheses may hold spaces and parentheses itself, so the
// fields are counted from the last ")".
func parseStatCPU(stat []byte) (float64, error) {
	end := bytes.LastIndexByte(stat, ')')
	if end < 0 {
		return 0, errors.New("no ')' after the command name")
	}
	// After ")": field 3 (state) onwards; utime and stime are fields 14 and 15.
	fields := bytes.Fields(stat[end+1:])
	const utime, stime = 14 - 3, 15 - 3
	if len(fields) <= stime {
		return 0, fmt.Errorf("%d fields after the command name, want more than %d", len(fields), stime)
	}
	u, err := strconv.ParseUint(string(fields[utime]), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("utime: %w", err)
	}
	s, err := strconv.ParseUint(string(fields[stime]), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("stime: %w", err)
	}
	return float64(u+s) / clockTicks, nil
}

// parseStatusKB returns the value in bytes of a "Name:   1234 kB" line of
// /proc/<pid>/status.
func parseStatusKB(status []byte, name string) (int64, error) {
	for line := range bytes.Lines(status) {
		rest, ok := bytes.CutPrefix(line, []byte(name+":"))
		if !ok {
			continue
		}
		fields := bytes.Fields(rest)
		if len(fields) != 2 || string(fields[1]) != "kB" {
			return 0, fmt.Errorf("%s: %q is not a size in kB", name, bytes.TrimSpace(rest))
		}
		kb, err := strconv.ParseInt(string(fields[0]), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%s: %w", name, err)
		}
		return kb << 10, nil
	}
	return 0, fmt.Errorf("no %s line", name)
}

// Point is one sample of one process, as the JSON report holds it.
type Point struct {
	T    float64 `json:"t"`    // seconds since sampling started
	RSS  int64   `json:"rss"`  // bytes
	Anon int64   `json:"anon"` // bytes of RSS that are not mapped files
	CPU  float64 `json:"cpu"`  // CPU seconds since the process started
}

// Series is one process's samples during one scenario.
type Series struct {
	Process string  `json:"process"`
	Pid     int     `json:"pid"`
	Points  []Point `json:"points"`
	// HWM is the kernel's peak RSS of the process (VmHWM) at the last sample; it
	// catches a peak that falls between two samples.
	HWM int64 `json:"hwm"`
}

// EnvoyPoint is one reading of Envoy's own allocator (admin /memory).
type EnvoyPoint struct {
	T         float64 `json:"t"`
	Allocated int64   `json:"allocated"` // server.memory_allocated
	HeapSize  int64   `json:"heap_size"` // server.memory_heap_size
}

// sampler reads the processes' RSS and CPU, and Envoy's allocator, every interval.
type sampler struct {
	interval time.Duration
	pids     map[string]int // process name → pid
	// pidOf, if set, names the pid of a process at each sample instead: a replica
	// restarted during the load has a new one.
	pidOf func(name string) int
	names []string       // the order of the series
	admin *harness.Admin // nil: no Envoy admin to read
	start time.Time

	mu     sync.Mutex
	series map[string]*Series
	envoy  []EnvoyPoint
	errs   []error // the first few read errors, for the report
}

func newSampler(interval time.Duration, names []string, pids map[string]int, admin *harness.Admin) *sampler {
	// The clock starts here, not in run: the load reads it from other goroutines.
	s := &sampler{interval: interval, pids: pids, names: names, admin: admin, series: map[string]*Series{}, start: time.Now()}
	for _, name := range names {
		s.series[name] = &Series{Process: name, Pid: pids[name]}
	}
	return s
}

// run samples until ctx ends. The first sample is taken at once, so that a
// scenario always has its idle figures.
func (s *sampler) run(ctx context.Context) { sampleEvery(ctx, s.interval, s.sample) }

// sampleEvery calls sample at once and then every interval until ctx ends.
func sampleEvery(ctx context.Context, interval time.Duration, sample func(context.Context)) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		sample(ctx)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// since is the time of t on the sampler's clock.
func (s *sampler) since(t time.Time) float64 { return t.Sub(s.start).Seconds() }

func (s *sampler) sample(ctx context.Context) {
	t := s.since(time.Now())
	for _, name := range s.names {
		pid := s.pids[name]
		if s.pidOf != nil {
			pid = s.pidOf(name)
		}
		p, err := readProc(pid)
		s.mu.Lock()
		if err != nil {
			s.noteError(fmt.Errorf("%s: %w", name, err))
		} else {
			series := s.series[name]
			series.Points = append(series.Points, Point{T: t, RSS: p.RSS, Anon: p.Anon, CPU: p.CPU})
			series.HWM = p.HWM
		}
		s.mu.Unlock()
	}
	if s.admin == nil {
		return
	}
	// A short timeout: Envoy's admin runs on its main thread, and a sample that waits
	// longer than this is worth skipping rather than queueing.
	memCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
	mem, err := s.admin.Memory(memCtx)
	cancel()
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		if ctx.Err() == nil {
			s.noteError(err)
		}
		return
	}
	s.envoy = append(s.envoy, EnvoyPoint{T: t, Allocated: mem.Allocated, HeapSize: mem.HeapSize})
}

// noteError keeps the first few errors; a process that died fails every sample after.
func (s *sampler) noteError(err error) {
	if len(s.errs) < 5 {
		s.errs = append(s.errs, err)
	}
}

// latest returns the newest RSS of every process, for the progress line.
func (s *sampler) latest() map[string]int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	rss := map[string]int64{}
	for name, series := range s.series {
		if n := len(series.Points); n > 0 {
			rss[name] = series.Points[n-1].RSS
		}
	}
	return rss
}

// result returns copies of what was sampled, in the order of names.
func (s *sampler) result() ([]Series, []EnvoyPoint, []error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	series := make([]Series, 0, len(s.names))
	for _, name := range s.names {
		series = append(series, *s.series[name])
	}
	return series, append([]EnvoyPoint(nil), s.envoy...), append([]error(nil), s.errs...)
}

// machineBusy returns the CPU seconds all CPUs have spent busy since boot, from the
// first line of /proc/stat. Its growth over a scenario, less that of the scenario's
// own processes, is CPU that something else on the machine took meanwhile.
func machineBusy() (float64, error) {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, err
	}
	return parseMachineBusy(data)
}

func parseMachineBusy(stat []byte) (float64, error) {
	line, _, _ := bytes.Cut(stat, []byte("\n"))
	fields := bytes.Fields(line)
	// cpu user nice system idle iowait irq softirq steal ...
	if len(fields) < 9 || string(fields[0]) != "cpu" {
		return 0, fmt.Errorf("/proc/stat: unexpected first line %q", line)
	}
	var busy uint64
	for i, f := range fields[1:9] {
		v, err := strconv.ParseUint(string(f), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/stat: field %d: %w", i+1, err)
		}
		if i != 3 && i != 4 { // idle and iowait
			busy += v
		}
	}
	return float64(busy) / clockTicks, nil
}

// waitIdle waits until the machine spent less than a quarter of a CPU busy over a
// second, or until timeout. It reports whether the machine went idle.
func waitIdle(ctx context.Context, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		before, err := machineBusy()
		if err != nil {
			return false
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(time.Second):
		}
		after, err := machineBusy()
		if err != nil {
			return false
		}
		if after-before < 0.25 {
			return true
		}
	}
	return false
}
