package bench

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/dustin/go-humanize"
)

// progress prints one line about the running scenario: on a terminal rewritten in
// place twice a second, elsewhere (make, CI logs) a new line every ten seconds.
type progress struct {
	w        io.Writer
	total    int // scenarios, rounds included
	terminal bool

	mu      sync.Mutex
	stop    chan struct{}
	stopped chan struct{}
}

func newProgress(w io.Writer) *progress {
	p := &progress{w: w}
	if f, ok := w.(*os.File); ok {
		if info, err := f.Stat(); err == nil && info.Mode()&os.ModeCharDevice != 0 {
			p.terminal = true
		}
	}
	return p
}

// begin starts reporting on a scenario's load until end.
func (p *progress) begin(index int, sc Scenario, l *load, smp *sampler) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stop, p.stopped = make(chan struct{}), make(chan struct{})
	period := 10 * time.Second
	if p.terminal {
		period = 500 * time.Millisecond
	}
	start := time.Now()
	go func(stop, stopped chan struct{}) {
		defer close(stopped)
		tick := time.NewTicker(period)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				if p.terminal {
					fmt.Fprint(p.w, "\r\033[K")
				}
				return
			case <-tick.C:
				line := progressLine(index, p.total, sc, l, smp.latest(), time.Since(start))
				if p.terminal {
					fmt.Fprintf(p.w, "\r\033[K%s", line)
				} else {
					fmt.Fprintln(p.w, line)
				}
			}
		}
	}(p.stop, p.stopped)
}

func (p *progress) end() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stop != nil {
		close(p.stop)
		<-p.stopped
		p.stop = nil
	}
}

// progressLine is e.g. "[3/12] fds-gzip h1 10×1GiB  4.2 GiB/10 GiB sent  412 MiB/s  done 0/10  envoy 45 MiB  bodystream 60 MiB  echo 12 MiB".
func progressLine(index, total int, sc Scenario, l *load, rss map[string]int64, elapsed time.Duration) string {
	sent := l.sent.Load()
	all := sc.Size * int64(sc.Concurrency)
	var b strings.Builder
	fmt.Fprintf(&b, "[%d/%d] %s  %s/%s sent", index+1, total, sc.Title(), humanize.IBytes(uint64(sent)), humanize.IBytes(uint64(all)))
	if s := elapsed.Seconds(); s > 0 {
		fmt.Fprintf(&b, "  %s/s", humanize.IBytes(uint64(float64(sent)/s)))
	}
	fmt.Fprintf(&b, "  done %d/%d", l.done.Load(), sc.Concurrency)
	if f := l.failed.Load(); f > 0 {
		fmt.Fprintf(&b, "  FAILED %d", f)
	}
	for _, name := range orderedNames(rss) {
		fmt.Fprintf(&b, "  %s %s", name, humanize.IBytes(uint64(rss[name])))
	}
	return b.String()
}
