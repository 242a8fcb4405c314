package server

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"iter"
	"os"
	"os/exec"
	"runtime"
	rtmetrics "runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dustin/go-humanize"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
)

// The memory benchmark: heap in use and RSS of the server with 1, 10 and
// 100 concurrent FULL_DUPLEX_STREAMED streams of 64 MiB and 1 GiB bodies. It is a test
// gated by BODYSTREAM_MEMBENCH=1 so that `go test` skips it:
//
//	BODYSTREAM_MEMBENCH=1 go test -run '^TestMemoryBench$' -v -timeout 30m ./server/
//
// Each scenario starts a fresh server in a child process (this test binary again,
// running TestMemoryBenchServer), so that the figures are the server's alone, not the
// load generator's, and the kernel's peak RSS (VmHWM) starts from zero. The child
// samples its heap in use (runtime/metrics heap objects + unused, i.e. HeapInuse), its
// live heap as of the last GC (what GOGC multiplies into the heap goal) and VmRSS every
// 10 ms, and reports the peaks against its baseline, taken after start-up and a GC. Bodies are generated as they are sent, cycling through a 4 MiB block of
// JSON lines in the parent; the server never sees a body whole.
//
// BODYSTREAM_MEMBENCH_SCENARIOS overrides the scenario list, comma-separated
// pipeline:streamsxsize[@cap], e.g. "gzip:100x64MiB,identity:10x1GiB,gzip:100x1GiB@60s".
// With @cap the streams are cancelled after that long; the report then says how far
// they got. BODYSTREAM_MEMBENCH_CODEC=bodystream runs the server with codec.go's codec
// and buffer pool instead of grpc-go's default; BODYSTREAM_MEMBENCH_CONFIG replaces
// the server's configuration (YAML; it must keep the routes the scenarios name).
//
// 100 concurrent 1 GiB bodies are 100 GiB through loopback, several minutes per
// pipeline on two cores: the default list stops at 10×1 GiB.
//
// The scenario's streams share one gRPC connection, as Envoy's do per worker. The
// memory budget is off, so that admission never refuses a stream: the figures are what
// the streams cost, not what the budget lets in.

const memBenchConfig = `
memory: {budget: 0}
pipelines:
  zstd: [{zstd: {level: fastest}}]
routes:
  - {name: identity, request: identity, response: identity}
  - {name: gzip, request: gzip, response: identity}
  - {name: zstd, request: zstd, response: identity}
`

const defaultMemBenchScenarios = "" +
	"identity:1x64MiB,identity:10x64MiB,identity:100x64MiB,identity:1x1GiB,identity:10x1GiB," +
	"gzip:1x64MiB,gzip:10x64MiB,gzip:100x64MiB,gzip:1x1GiB,gzip:10x1GiB," +
	"zstd:1x64MiB,zstd:10x64MiB,zstd:100x64MiB,zstd:1x1GiB"

type memScenario struct {
	route   string
	streams int
	size    int64
	cap     time.Duration // 0: run to completion
}

func (s memScenario) String() string {
	size := strings.ReplaceAll(humanize.IBytes(uint64(s.size)), " ", "")
	switch {
	case s.size%(1<<30) == 0:
		size = fmt.Sprintf("%dGiB", s.size>>30)
	case s.size%(1<<20) == 0:
		size = fmt.Sprintf("%dMiB", s.size>>20)
	}
	name := fmt.Sprintf("%s:%dx%s", s.route, s.streams, size)
	if s.cap > 0 {
		name += "@" + s.cap.String()
	}
	return name
}

func parseMemScenarios(list string) ([]memScenario, error) {
	var out []memScenario
	for _, item := range strings.Split(list, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		route, rest, ok := strings.Cut(item, ":")
		if !ok {
			return nil, fmt.Errorf("scenario %q: want pipeline:streamsxsize[@cap]", item)
		}
		rest, capText, hasCap := strings.Cut(rest, "@")
		n, size, ok := strings.Cut(rest, "x")
		if !ok {
			return nil, fmt.Errorf("scenario %q: want pipeline:streamsxsize[@cap]", item)
		}
		s := memScenario{route: route}
		var err error
		if s.streams, err = strconv.Atoi(n); err != nil || s.streams < 1 {
			return nil, fmt.Errorf("scenario %q: bad stream count", item)
		}
		bytes, err := humanize.ParseBytes(size)
		if err != nil {
			return nil, fmt.Errorf("scenario %q: %w", item, err)
		}
		s.size = int64(bytes)
		if hasCap {
			if s.cap, err = time.ParseDuration(capText); err != nil {
				return nil, fmt.Errorf("scenario %q: %w", item, err)
			}
		}
		out = append(out, s)
	}
	return out, nil
}

// memReport is what the server process reports about itself.
type memReport struct {
	BaseHeap, PeakHeap uint64 // heap in use (HeapInuse), bytes
	BaseLive, PeakLive uint64 // live heap as of the last GC (what GOGC multiplies)
	BaseRSS, PeakRSS   uint64 // VmRSS, sampled
	HWM                uint64 // VmHWM: the kernel's peak RSS of the process
	Samples            int
}

func TestMemoryBench(t *testing.T) {
	if os.Getenv("BODYSTREAM_MEMBENCH") != "1" {
		t.Skip("set BODYSTREAM_MEMBENCH=1 to run the memory benchmark")
	}
	list := os.Getenv("BODYSTREAM_MEMBENCH_SCENARIOS")
	if list == "" {
		list = defaultMemBenchScenarios
	}
	scenarios, err := parseMemScenarios(list)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("GOMAXPROCS=%d GOGC=%q GOMEMLIMIT=%q server codec=%q", runtime.GOMAXPROCS(0), os.Getenv("GOGC"), os.Getenv("GOMEMLIMIT"), cmp.Or(os.Getenv("BODYSTREAM_MEMBENCH_CODEC"), "grpc-default"))
	t.Logf("%-24s %9s %6s %10s %10s %10s %10s %10s %10s %12s %12s %12s", "scenario", "time", "MB/s",
		"base heap", "peak heap", "peak live", "base RSS", "peak RSS", "VmHWM", "heap/stream", "live/stream", "RSS/stream")
	block := jsonLines(4<<20, 7)
	for _, sc := range scenarios {
		res, err := runMemScenario(t, sc, block)
		if err != nil {
			t.Fatalf("%s: %v", sc, err)
		}
		r := res.report
		perHeap := (int64(r.PeakHeap) - int64(r.BaseHeap)) / int64(sc.streams)
		perLive := (int64(r.PeakLive) - int64(r.BaseLive)) / int64(sc.streams)
		perRSS := (int64(r.PeakRSS) - int64(r.BaseRSS)) / int64(sc.streams)
		t.Logf("%-24s %9s %6.0f %10s %10s %10s %10s %10s %10s %12s %12s %12s%s", sc, res.elapsed.Round(100*time.Millisecond),
			float64(res.moved)/1e6/res.elapsed.Seconds(),
			mib(int64(r.BaseHeap)), mib(int64(r.PeakHeap)), mib(int64(r.PeakLive)), mib(int64(r.BaseRSS)), mib(int64(r.PeakRSS)), mib(int64(r.HWM)),
			kib(perHeap), kib(perLive), kib(perRSS), res.note)
	}
}

func mib(n int64) string { return fmt.Sprintf("%.1fMiB", float64(n)/(1<<20)) }
func kib(n int64) string { return fmt.Sprintf("%.0fKiB", float64(n)/(1<<10)) }

type memResult struct {
	report  memReport
	elapsed time.Duration
	moved   int64 // body bytes sent by all streams
	note    string
}

// runMemScenario starts a server process, runs the scenario's streams against it at
// once, and collects the server's report.
func runMemScenario(t *testing.T, sc memScenario, block []byte) (memResult, error) {
	cmd := exec.Command(os.Args[0], "-test.run=^TestMemoryBenchServer$", "-test.count=1", "-test.timeout=0")
	cmd.Env = append(os.Environ(), "BODYSTREAM_MEMBENCH_SERVER=1")
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return memResult{}, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return memResult{}, err
	}
	if err := cmd.Start(); err != nil {
		return memResult{}, err
	}
	defer func() {
		stdin.Close()
		cmd.Wait()
	}()
	lines := bufio.NewScanner(stdout)
	addr, err := readTagged(lines, "listening ")
	if err != nil {
		return memResult{}, err
	}

	conn, err := grpc.NewClient(addr, envoyDialOptions()...)
	if err != nil {
		return memResult{}, err
	}
	defer conn.Close()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if sc.cap > 0 {
		ctx, cancel = context.WithTimeout(ctx, sc.cap)
		defer cancel()
	}
	var moved atomic.Int64
	var completed atomic.Int64
	start := time.Now()
	var g errgroup.Group
	for i := range sc.streams {
		g.Go(func() error {
			e, err := openEnvoyBody(ctx, conn, sc.route)
			if err != nil {
				return err
			}
			var wg sync.WaitGroup
			var sendErr, recvErr error
			wg.Go(func() { sendErr = e.send(cycling(block, sc.size, i*7*benchMessageSize, &moved)) })
			wg.Go(func() { recvErr = e.receive(func([]byte) {}) })
			wg.Wait()
			if ctx.Err() != nil && sc.cap > 0 {
				return nil // capped: the streams are cut off on purpose
			}
			if sendErr != nil || recvErr != nil {
				return fmt.Errorf("stream %d: send %v, receive %v", i, sendErr, recvErr)
			}
			completed.Add(1)
			return e.finish()
		})
	}
	err = g.Wait()
	elapsed := time.Since(start)
	if err != nil {
		return memResult{}, err
	}
	if _, err := io.WriteString(stdin, "report\n"); err != nil {
		return memResult{}, err
	}
	text, err := readTagged(lines, "report ")
	if err != nil {
		return memResult{}, err
	}
	res := memResult{elapsed: elapsed, moved: moved.Load()}
	if err := json.Unmarshal([]byte(text), &res.report); err != nil {
		return memResult{}, err
	}
	if n := completed.Load(); n < int64(sc.streams) {
		res.note = fmt.Sprintf("  (capped: %d of %d streams completed; each sent %s on average)", n, sc.streams, humanize.IBytes(uint64(res.moved/int64(sc.streams))))
	}
	return res, nil
}

func readTagged(lines *bufio.Scanner, tag string) (string, error) {
	for lines.Scan() {
		if text, ok := strings.CutPrefix(lines.Text(), tag); ok {
			return text, nil
		}
	}
	if err := lines.Err(); err != nil {
		return "", err
	}
	return "", fmt.Errorf("server process ended before saying %q", strings.TrimSpace(tag))
}

// cycling yields total bytes in 64 KiB messages taken from block in a cycle, starting
// at offset, and counts them into moved. The messages alias block: nothing is copied.
func cycling(block []byte, total int64, offset int, moved *atomic.Int64) iter.Seq[[]byte] {
	return func(yield func([]byte) bool) {
		off := offset % len(block)
		for total > 0 {
			n := min(int64(benchMessageSize), total, int64(len(block)-off))
			if !yield(block[off : off+int(n)]) {
				return
			}
			moved.Add(n)
			total -= n
			off = (off + int(n)) % len(block)
		}
	}
}

// TestMemoryBenchServer is the server process of TestMemoryBench: it serves
// bodystream on loopback, samples its own memory, and on "report" on stdin prints the
// peaks and ends.
func TestMemoryBenchServer(t *testing.T) {
	if os.Getenv("BODYSTREAM_MEMBENCH_SERVER") != "1" {
		t.Skip("the server process of TestMemoryBench")
	}
	yamlText := cmp.Or(os.Getenv("BODYSTREAM_MEMBENCH_CONFIG"), memBenchConfig)
	var extra []grpc.ServerOption
	if os.Getenv("BODYSTREAM_MEMBENCH_CODEC") == "bodystream" {
		srv, _ := newServer(t, yamlText)
		extra = srv.codecOptions()
	}
	_, lb := serveBodystream(t, yamlText, extra)
	lb.conn.Close() // unused: the parent process is the client

	var r memReport
	r.BaseHeap, r.BaseLive, r.BaseRSS = baseline()
	r.PeakHeap, r.PeakLive, r.PeakRSS = r.BaseHeap, r.BaseLive, r.BaseRSS
	var mu sync.Mutex
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		samples := []rtmetrics.Sample{
			{Name: "/memory/classes/heap/objects:bytes"},
			{Name: "/memory/classes/heap/unused:bytes"},
			{Name: "/gc/heap/live:bytes"},
		}
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			rtmetrics.Read(samples)
			heap := samples[0].Value.Uint64() + samples[1].Value.Uint64()
			rss, _ := procStatus("VmRSS")
			mu.Lock()
			r.PeakHeap, r.PeakRSS = max(r.PeakHeap, heap), max(r.PeakRSS, rss)
			r.PeakLive = max(r.PeakLive, samples[2].Value.Uint64())
			r.Samples++
			mu.Unlock()
		}
	}()

	fmt.Printf("listening %s\n", lb.addr)
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() && in.Text() != "report" {
	}
	close(stop)
	<-sampled
	r.HWM, _ = procStatus("VmHWM")
	out, _ := json.Marshal(r)
	fmt.Printf("report %s\n", out)
}

// baseline is the heap in use, the live heap and RSS after start-up and a collection.
func baseline() (heap, live, rss uint64) {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	samples := []rtmetrics.Sample{{Name: "/gc/heap/live:bytes"}}
	rtmetrics.Read(samples)
	rss, _ = procStatus("VmRSS")
	return ms.HeapInuse, samples[0].Value.Uint64(), rss
}

// procStatus reads a "kB" field of /proc/self/status, in bytes.
func procStatus(field string) (uint64, error) { return processStatus(os.Getpid(), field) }
