package bench

import (
	"fmt"
	"io"
	"net/textproto"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/bodystream/bodystream/internal/harness"
	"github.com/bodystream/bodystream/stage"
)

// parallelBodySize is the body BenchmarkParallelCompression compresses: 1 GiB, made of
// a 64 MiB JSON block repeated. The codecs' windows (32 KiB for deflate, 1 MiB for
// zstd) are far shorter than the block, so the repeat gains them nothing.
const (
	parallelBodySize  = 1 << 30
	parallelBlockSize = 64 << 20
)

// repeatReader yields block over and over, n bytes in all.
type repeatReader struct {
	block []byte
	off   int
	left  int64
}

func (r *repeatReader) Read(p []byte) (int, error) {
	if r.left == 0 {
		return 0, io.EOF
	}
	if r.off == len(r.block) {
		r.off = 0
	}
	n := copy(p[:min(int64(len(p)), r.left)], r.block[r.off:])
	r.off += n
	r.left -= int64(n)
	return n, nil
}

// countWriter counts bytes and keeps none.
type countWriter int64

func (c *countWriter) Write(p []byte) (int, error) {
	*c += countWriter(len(p))
	return len(p), nil
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// heapPeak samples the live heap every 20 ms until stop is called, and returns the
// highest sample.
func heapPeak() (stop func() uint64) {
	done := make(chan struct{})
	var peak uint64
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			peak = max(peak, ms.HeapInuse)
			select {
			case <-done:
				return
			case <-tick.C:
			}
		}
	})
	return func() uint64 {
		close(done)
		wg.Wait()
		return peak
	}
}

// BenchmarkParallelCompression compresses one 1 GiB JSON body, in-process, with gzip
// level 1 and zstd fastest at concurrency 1, 2 and 4. Besides MB/s it reports the CPU
// cores the body kept busy (CPU time over wall time), the peak heap the body added
// (sampled every 20 ms, above the heap before it, which holds the 64 MiB input block),
// the stage's own memory estimate, and the ratio. Run it with -benchtime 1x:
//
//	go test -run '^$' -bench BenchmarkParallelCompression -benchtime 1x ./bench
func BenchmarkParallelCompression(b *testing.B) {
	src, err := harness.NewBody(harness.BodyJSON, parallelBlockSize, 1, "")
	if err != nil {
		b.Fatal(err)
	}
	block, err := io.ReadAll(src)
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct{ kind, options string }{
		{"gzip", "level: 1"},
		{"zstd", "level: fastest"},
	} {
		for _, concurrency := range []int{1, 2, 4} {
			p := corpusPair{kind: c.kind, options: fmt.Sprintf("%s\nconcurrency: %d", c.options, concurrency)}
			b.Run(fmt.Sprintf("%s/concurrency-%d", c.kind, concurrency), func(b *testing.B) {
				spec := corpusStage(b, p)
				m := &stage.Message{Direction: stage.Request, Header: textproto.MIMEHeader{"Content-Type": {"application/json"}}}
				b.SetBytes(parallelBodySize)
				var out countWriter
				var cpu, wall time.Duration
				var peak, base uint64
				for b.Loop() {
					step, err := spec.Plan(m, block[:spec.PreviewSize(m)])
					if err != nil || step.Transformer == nil {
						b.Fatalf("Plan = %+v, %v", step, err)
					}
					runtime.GC()
					var ms runtime.MemStats
					runtime.ReadMemStats(&ms)
					base = ms.HeapInuse
					stop := heapPeak()
					out = 0
					cpu0, start := cpuTime(b), time.Now()
					err = step.Transformer.Transform(&out, &repeatReader{block: block, left: parallelBodySize})
					cpu, wall = cpuTime(b)-cpu0, time.Since(start)
					peak = stop()
					if err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(cpu.Seconds()/wall.Seconds(), "cores")
				b.ReportMetric(float64(peak-min(peak, base))/(1<<20), "peak-heap-MiB")
				b.ReportMetric(float64(spec.(stage.MemoryEstimator).MemoryEstimate(m))/(1<<20), "estimate-MiB")
				b.ReportMetric(float64(parallelBodySize)/float64(out), "ratio")
			})
		}
	}
}
