package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/dustin/go-humanize"

	"github.com/bodystream/bodystream/internal/harness"
)

// Report is everything a run measured; results.json holds it.
type Report struct {
	Command      string  `json:"command"`
	Started      string  `json:"started"`
	Revision     string  `json:"revision,omitempty"` // git describe of the source tree, when known
	Machine      Machine `json:"machine"`
	Envoy        string  `json:"envoy"` // envoy --version
	EnvoyWorkers int     `json:"envoy_workers"`
	Interval     string  `json:"interval"`
	// Windows are the -windows changes to every scenario's envoy.yaml, if any.
	Windows     *Windows  `json:"windows,omitempty"`
	Results     []*Result `json:"results"`
	Interrupted bool      `json:"interrupted,omitempty"`
}

// Machine describes where the figures come from.
type Machine struct {
	CPUs     int    `json:"cpus"`
	CPUModel string `json:"cpu_model"`
	Memory   int64  `json:"memory"` // bytes
	Kernel   string `json:"kernel"`
	Go       string `json:"go"`
}

func describeMachine() Machine {
	m := Machine{CPUs: runtime.NumCPU(), Go: runtime.Version()}
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.Lines(string(data)) {
			if name, value, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(name) == "model name" {
				m.CPUModel = strings.TrimSpace(value)
				break
			}
		}
	}
	if data, err := os.ReadFile("/proc/meminfo"); err == nil {
		m.Memory, _ = parseStatusKB(data, "MemTotal")
	}
	if data, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(data))
	}
	return m
}

// gitRevision describes the source tree the bench runs in, "+dirty" when it has
// changes: binaries are built from the working tree.
func gitRevision(ctx context.Context, root string) string {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "git", "describe", "--always", "--dirty=+dirty")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}

func envoyVersion(ctx context.Context, envoy string) string {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, envoy, "--version").Output()
	if err != nil {
		return "unknown: " + err.Error()
	}
	_, version, _ := strings.Cut(strings.TrimSpace(string(out)), "version: ")
	return version
}

// writeText writes the report's tables.
func (rep *Report) writeText(w io.Writer) error {
	bw := bufio.NewWriter(w)
	m := rep.Machine
	fmt.Fprintf(bw, "Machine: %d CPUs, %s, %s memory, Linux %s, %s\n", m.CPUs, m.CPUModel, humanize.IBytes(uint64(m.Memory)), m.Kernel, m.Go)
	fmt.Fprintf(bw, "Envoy:   %s, %d worker threads; samples every %s\n", rep.Envoy, rep.EnvoyWorkers, rep.Interval)
	if rep.Revision != "" {
		fmt.Fprintf(bw, "Source:  %s\n", rep.Revision)
	}
	if rep.Windows != nil {
		fmt.Fprintf(bw, "Envoy's settings changed (-windows): %s\n", rep.Windows)
	}
	fmt.Fprintln(bw)

	fmt.Fprintln(bw, "Throughput and latency (throughput = request bytes / load time; ratio = bytes sent / bytes the upstream got)")
	tw := tabwriter.NewWriter(bw, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\troute\tbody\ttime\tthroughput\tp50\tp99\tratio\terrors\t")
	for _, r := range rep.Results {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s/s\t%s\t%s\t%.2f\t%d\t\n", r.Title, r.Scenario.Route, r.Scenario.Body,
			seconds(r.LoadEnd-r.LoadStart), humanize.IBytes(uint64(r.Throughput)), seconds(r.P50), seconds(r.P99), r.Ratio, r.Errors)
	}
	tw.Flush()

	fmt.Fprintln(bw, "\nOutcomes: byte-exact, refused (503 with retry-after, before the upstream saw the request), failed;")
	fmt.Fprintln(bw, "bodystream's peak RSS against its memory budget + 64 MiB; Envoy's RSS growth per upload (peak - idle) / uploads")
	tw = tabwriter.NewWriter(bw, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\tuploads\tbyte-exact\trefused\tfailed\tupstream requests\tbodystream peak\tbudget + 64 MiB\tenvoy growth/upload\t")
	for _, r := range rep.Results {
		upstream := "–"
		if r.UpstreamRequests >= 0 {
			upstream = fmt.Sprint(r.UpstreamRequests)
		}
		peak, limit := "–", "–"
		if p, ok := r.process("bodystream"); ok && r.Budget > 0 {
			peak, limit = mib(p.PeakRSS), mib(r.Budget+budgetSlack)
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%s\t%s\t%s\t%s\t\n", r.Title, len(r.Uploads), r.byteExact(),
			r.Refused, r.Errors, upstream, peak, limit, mib(r.envoyGrowthPerUpload()))
	}
	tw.Flush()

	procs := rep.processNames()
	fmt.Fprintln(bw, "\nMemory in MiB during the load: RSS peak / mean / peak of its anonymous part (RssAnon, without mapped program files);")
	fmt.Fprintln(bw, "Envoy's own heap: peak server.memory_allocated and memory_heap_size")
	tw = tabwriter.NewWriter(bw, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprint(tw, "scenario\t")
	for _, name := range procs {
		fmt.Fprintf(tw, "%s\t", name)
	}
	fmt.Fprintln(tw, "envoy allocated\tenvoy heap\t")
	for _, r := range rep.Results {
		fmt.Fprintf(tw, "%s\t", r.Title)
		for _, name := range procs {
			if p, ok := r.process(name); ok {
				fmt.Fprintf(tw, "%s / %s / %s\t", mibNumber(p.PeakRSS), mibNumber(p.MeanRSS), mibNumber(p.PeakAnon))
			} else {
				fmt.Fprint(tw, "–\t")
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t\n", mibNumber(r.EnvoyPeakAllocated), mibNumber(r.EnvoyPeakHeap))
	}
	tw.Flush()

	fmt.Fprintln(bw, "\nCPU seconds per GiB uploaded (other = the rest of the machine during the load: should be near 0)")
	tw = tabwriter.NewWriter(bw, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "scenario\t%s\ttotal\tother\t\n", strings.Join(procs, "\t"))
	for _, r := range rep.Results {
		fmt.Fprintf(tw, "%s\t", r.Title)
		var total float64
		for _, name := range procs {
			if p, ok := r.process(name); ok {
				fmt.Fprintf(tw, "%.2f\t", p.CPUPerGiB)
				total += p.CPUPerGiB
			} else {
				fmt.Fprint(tw, "–\t")
			}
		}
		other := 0.0
		if r.Bytes > 0 {
			other = r.OtherCPU / (float64(r.Bytes) / (1 << 30))
		}
		fmt.Fprintf(tw, "%.2f\t%.2f\t\n", total, other)
	}
	tw.Flush()

	judged := rep.Results
	if rounds := rep.rounds(); rounds > 1 {
		judged = aggregate(rep.Results)
		fmt.Fprintf(bw, "\nOver %d rounds: median throughput and stack CPU (all processes but the client), largest peak RSS (MiB)\n", rounds)
		tw = tabwriter.NewWriter(bw, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintf(tw, "scenario\tthroughput\tstack CPU s/GiB\tratio\terrors\t%s\t\n", strings.Join(procs, "\t"))
		for _, r := range judged {
			fmt.Fprintf(tw, "%s\t%s/s\t%.2f\t%.2f\t%d\t", r.Title, humanize.IBytes(uint64(r.Throughput)), r.stackCPUPerGiB(), r.Ratio, r.Errors)
			for _, name := range procs {
				if p, ok := r.process(name); ok {
					fmt.Fprintf(tw, "%s\t", mibNumber(p.PeakRSS))
				} else {
					fmt.Fprint(tw, "–\t")
				}
			}
			fmt.Fprintln(tw)
		}
		tw.Flush()
	}
	if lines := goals(judged); len(lines) > 0 {
		fmt.Fprintln(bw, "\nGoals")
		for _, g := range lines {
			fmt.Fprintln(bw, "  "+g)
		}
	}
	for _, r := range rep.Results {
		if r.Errors > 0 {
			fmt.Fprintf(bw, "\nFAILED %s: %d of %d uploads\n", r.Title, r.Errors, len(r.Uploads))
			for _, e := range errorSummary(r.Uploads, 5) {
				fmt.Fprintf(bw, "  %s\n", e)
			}
			if r.LeakedRefusals > 0 {
				fmt.Fprintf(bw, "  %d× refused (503, retry-after) after the upstream had the request: Envoy sent the echo %d requests for %d byte-exact uploads and %d refusals\n",
					r.LeakedRefusals, r.UpstreamRequests, r.byteExact(), r.Refused)
			}
		}
		if out := r.Notes["outcomes"]; out != "" {
			fmt.Fprintf(bw, "\nDRILL %s: uploads by the phase they ended in (%s failed because their replica was killed: not errors)\n", r.Title, r.Notes["killed"])
			for line := range strings.Lines(out) {
				fmt.Fprintf(bw, "  %s", line)
			}
		}
		if r.StackErrors != "" {
			fmt.Fprintf(bw, "\nSTACK %s: %s\n", r.Title, r.StackErrors)
		}
		for _, e := range r.SampleErrors {
			fmt.Fprintf(bw, "\nsampling %s: %s\n", r.Title, e)
		}
	}
	if rep.Interrupted {
		fmt.Fprintln(bw, "\nINTERRUPTED: the last scenario did not finish.")
	}
	return bw.Flush()
}

// processNames returns every process any result sampled, in processOrder.
func (rep *Report) processNames() []string {
	seen := map[string]bool{}
	for _, r := range rep.Results {
		for _, p := range r.Processes {
			seen[p.Name] = true
		}
	}
	return orderedNames(seen)
}

// goals checks the targets against the scenarios that measure them.
func goals(results []*Result) []string {
	var lines []string
	find := func(kind string, size int64, c int, proto harness.Protocol) *Result {
		for _, r := range results {
			s := r.Scenario
			if s.Kind.Name == kind && s.Size == size && s.Concurrency == c && s.Protocol == proto && r.Errors == 0 {
				return r
			}
		}
		return nil
	}
	verdict := func(ok bool) string {
		if ok {
			return "met"
		}
		return "MISSED"
	}
	// bodystream must not buy its speed with a worse ratio; a better one is no fault.
	ratioVerdict := func(diff float64) string {
		switch {
		case diff < -0.05:
			return "MISSED (worse)"
		case diff > 0.05:
			return "better than equal"
		}
		return "equal within 5%: met"
	}
	for _, proto := range []harness.Protocol{harness.H1, harness.H2} {
		if r := find("fds-gzip", 1<<30, 10, proto); r != nil {
			for _, limit := range []struct {
				name string
				max  int64
			}{{"envoy", 128 << 20}, {"bodystream", 96 << 20}, {"echo", 32 << 20}} {
				if p, ok := r.process(limit.name); ok {
					lines = append(lines, fmt.Sprintf("%s: %s peak RSS %s, goal under %s: %s",
						r.Title, limit.name, mib(p.PeakRSS), mib(limit.max), verdict(p.PeakRSS < limit.max)))
				}
			}
		}
	}
	for _, r := range results {
		s := r.Scenario
		if s.Kind.Name != "bodystream-gzip" || r.Errors > 0 {
			continue
		}
		for _, kind := range []string{"native-gzip", "native-gzip-2"} {
			native := find(kind, s.Size, s.Concurrency, s.Protocol)
			if native == nil || native.Throughput == 0 || native.Ratio == 0 {
				continue
			}
			ratioDiff := r.Ratio/native.Ratio - 1
			lines = append(lines, fmt.Sprintf("%s vs %s: throughput %s/s vs %s/s (%+.0f%%): %s; ratio %.2f vs %.2f (%+.1f%%): %s; stack CPU %.2f vs %.2f s/GiB",
				r.Title, kind, humanize.IBytes(uint64(r.Throughput)), humanize.IBytes(uint64(native.Throughput)),
				100*(r.Throughput/native.Throughput-1), verdict(r.Throughput >= native.Throughput),
				r.Ratio, native.Ratio, 100*ratioDiff, ratioVerdict(ratioDiff), r.stackCPUPerGiB(), native.stackCPUPerGiB()))
		}
	}
	for _, r := range results {
		s := r.Scenario
		if s.Concurrency < manyUploads[0] || r.Errors > 0 {
			continue
		}
		if p, ok := r.process("bodystream"); ok && r.Budget > 0 {
			lines = append(lines, fmt.Sprintf("%s: bodystream peak RSS %s, goal at most budget + 64 MiB = %s: %s (%d of %d uploads refused cleanly)",
				r.Title, mib(p.PeakRSS), mib(r.Budget+budgetSlack), verdict(p.PeakRSS <= r.Budget+budgetSlack), r.Refused, len(r.Uploads)))
		}
		if s.Kind.Name != "fds" && s.Kind.Name != "fds-gzip" {
			continue
		}
		if streamed := find("streamed", s.Size, s.Concurrency, s.Protocol); streamed != nil {
			f, st := r.envoyGrowthPerUpload(), streamed.envoyGrowthPerUpload()
			lines = append(lines, fmt.Sprintf("%s: Envoy grows %s per FULL_DUPLEX_STREAMED upload vs %s per STREAMED upload: %s",
				r.Title, mib(f), mib(st), verdict(f > 0 && st > 0 && f <= st)))
		}
	}
	for _, r := range results {
		s := r.Scenario
		if s.Kind.Name != "fds" || r.Errors > 0 {
			continue
		}
		streamed := find("streamed", s.Size, s.Concurrency, s.Protocol)
		if streamed == nil {
			continue
		}
		fe, ok1 := r.process("envoy")
		se, ok2 := streamed.process("envoy")
		if ok1 && ok2 {
			lines = append(lines, fmt.Sprintf("%s: Envoy peak RSS %s in FULL_DUPLEX_STREAMED vs %s in STREAMED: %s",
				r.Title, mib(fe.PeakRSS), mib(se.PeakRSS), verdict(fe.PeakRSS <= se.PeakRSS)))
		}
	}
	return lines
}

// byteExact is how many uploads came back whole: neither refused nor failed. A
// refusal that reached the upstream counts among the refused and the errors both.
func (res *Result) byteExact() int {
	return len(res.Uploads) - res.Refused - (res.Errors - res.LeakedRefusals)
}

// budgetSlack is what bodystream may hold beyond its memory budget: the runtime,
// its code and the buffers no body reserves (issue 10's goal).
const budgetSlack = 64 << 20

// envoyGrowthPerUpload is Envoy's RSS growth over the load, peak less idle, per
// concurrent upload; 0 when unknown.
func (res *Result) envoyGrowthPerUpload() int64 {
	p, ok := res.process("envoy")
	if !ok || res.Scenario.Concurrency == 0 || p.PeakRSS <= p.IdleRSS {
		return 0
	}
	return (p.PeakRSS - p.IdleRSS) / int64(res.Scenario.Concurrency)
}

// rounds is how many times the report ran its scenarios (-repeat).
func (rep *Report) rounds() int {
	n := 1
	for _, r := range rep.Results {
		n = max(n, r.Round)
	}
	return n
}

// aggregate folds the rounds of each scenario into one result: the median of
// throughput, latency, ratio and CPU per GiB, the largest peaks, every error. Medians,
// because on a shared machine one round can be slowed by something else.
func aggregate(results []*Result) []*Result {
	var order []string
	rounds := map[string][]*Result{}
	for _, r := range results {
		title := r.Scenario.Title()
		if rounds[title] == nil {
			order = append(order, title)
		}
		rounds[title] = append(rounds[title], r)
	}
	var out []*Result
	for _, title := range order {
		rs := rounds[title]
		agg := &Result{Scenario: rs[0].Scenario, Title: title}
		med := func(value func(*Result) float64) float64 {
			var v []float64
			for _, r := range rs {
				v = append(v, value(r))
			}
			slices.Sort(v)
			return v[len(v)/2]
		}
		agg.Throughput = med(func(r *Result) float64 { return r.Throughput })
		agg.P50 = med(func(r *Result) float64 { return r.P50 })
		agg.P99 = med(func(r *Result) float64 { return r.P99 })
		agg.Ratio = med(func(r *Result) float64 { return r.Ratio })
		for _, r := range rs {
			agg.Errors += r.Errors
			agg.Bytes += r.Bytes
			agg.EnvoyPeakAllocated = max(agg.EnvoyPeakAllocated, r.EnvoyPeakAllocated)
			agg.EnvoyPeakHeap = max(agg.EnvoyPeakHeap, r.EnvoyPeakHeap)
		}
		for _, p := range rs[0].Processes {
			ps := ProcessSummary{Name: p.Name}
			for _, r := range rs {
				q, _ := r.process(p.Name)
				ps.PeakRSS = max(ps.PeakRSS, q.PeakRSS)
				ps.PeakAnon = max(ps.PeakAnon, q.PeakAnon)
				ps.HWM = max(ps.HWM, q.HWM)
			}
			ps.MeanRSS = int64(med(func(r *Result) float64 { q, _ := r.process(p.Name); return float64(q.MeanRSS) }))
			ps.CPUPerGiB = med(func(r *Result) float64 { q, _ := r.process(p.Name); return q.CPUPerGiB })
			agg.Processes = append(agg.Processes, ps)
		}
		out = append(out, agg)
	}
	return out
}

// stackCPUPerGiB is the CPU seconds per GiB of every process but the client: what
// the stack costs, which other load on the machine disturbs less than throughput.
func (res *Result) stackCPUPerGiB() float64 {
	var total float64
	for _, p := range res.Processes {
		if p.Name != clientProcess {
			total += p.CPUPerGiB
		}
	}
	return total
}

func (rep *Report) writeJSON(w io.Writer) error {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", " ")
	if err := enc.Encode(rep); err != nil {
		return err
	}
	_, err := w.Write(buf.Bytes())
	return err
}

// mib writes a byte count in MiB with one decimal: tables compare processes whose
// memory differs by a few MiB, which humanize's rounding would hide.
func mib(n int64) string {
	if n == 0 {
		return "–"
	}
	return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
}

// mibNumber is mib without the unit, for tables that name it in their heading.
func mibNumber(n int64) string {
	if n == 0 {
		return "–"
	}
	return fmt.Sprintf("%.1f", float64(n)/(1<<20))
}

func seconds(s float64) string {
	if s < 10 {
		return fmt.Sprintf("%.2fs", s)
	}
	return fmt.Sprintf("%.1fs", s)
}
