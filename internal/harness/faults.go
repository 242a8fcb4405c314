package harness

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/procfs"
)

// Kill sends SIGKILL to the named process of the stack and waits until it has exited.
// Stop then takes its exit for granted; Restart starts it again.
func (s *Stack) Kill(name string) error {
	p := s.Process(name)
	if p == nil {
		return fmt.Errorf("no process %q in the stack", name)
	}
	p.killed = true
	if err := p.Cmd.Process.Signal(syscall.SIGKILL); err != nil {
		select {
		case <-p.done: // it had exited already
		default:
			return fmt.Errorf("kill %s: %w", name, err)
		}
	}
	<-p.done
	return nil
}

// Signal sends sig to the named process, e.g. SIGTERM to watch bodystream drain; the
// process's Exited and Err say when and how it ended. A process that exits on it is
// taken for granted by Stop.
func (s *Stack) Signal(name string, sig syscall.Signal) error {
	p := s.Process(name)
	if p == nil {
		return fmt.Errorf("no process %q in the stack", name)
	}
	p.killed = true
	return p.Cmd.Process.Signal(sig)
}

// restartProcess starts the named process that is not a replica (the echo, an
// extra; not Envoy) again with its first arguments, on the addresses it announced
// the first time, so that Envoy's clusters reach it again, and waits until it serves.
// The process must have exited (Kill). Its log goes on in the same file.
func (s *Stack) restartProcess(ctx context.Context, name string) error {
	old := s.Process(name)
	if old == nil || name == "envoy" {
		return fmt.Errorf("no restartable process %q in the stack", name)
	}
	select {
	case <-old.done:
	default:
		return fmt.Errorf("%s is still running", name)
	}
	// A SIGKILLed process left its ready file behind.
	if err := os.Remove(s.readyPath(name)); err != nil && !os.IsNotExist(err) {
		return err
	}
	args := sameAddresses(old.args, old.Addrs.Addr, old.Addrs.Metrics)
	p, err := startProcess(s.Dir, name, old.path, old.env, args...)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.procs[slices.Index(s.procs, old)] = p
	s.mu.Unlock()
	addrs, err := s.waitReady(ctx, p)
	if err != nil {
		return fmt.Errorf("restart %s: %w\n%s", name, err, p.tail(20))
	}
	if addrs.Addr != old.Addrs.Addr || addrs.Metrics != old.Addrs.Metrics {
		return fmt.Errorf("restart %s: it serves on %+v, not on its first addresses %+v", name, addrs, old.Addrs)
	}
	return nil
}

// sameAddresses replaces the free-port requests (127.0.0.1:0) of the listen flags in
// args with the addresses a first start got.
func sameAddresses(args []string, addr, metrics string) []string {
	args = slices.Clone(args)
	for i := 1; i < len(args); i++ {
		if args[i] != "127.0.0.1:0" {
			continue
		}
		switch strings.TrimLeft(args[i-1], "-") {
		case "listen":
			args[i] = addr
		case "metrics-listen", "admin-listen":
			args[i] = metrics
		}
	}
	return args
}

// RSS is the process's resident set size in bytes.
func (p *Process) RSS() (int64, error) {
	proc, err := procfs.NewProc(p.Pid())
	if err != nil {
		return 0, err
	}
	status, err := proc.NewStatus()
	if err != nil {
		return 0, err
	}
	return int64(status.VmRSS), nil
}

// ScrapeGauges reads the series named from the Prometheus text exposition at url
// (bodystream's http://ADDR/metrics). A name is written as the exposition writes it,
// labels included: bodystream_body_messages_total{direction="request",side="in"}.
func ScrapeGauges(ctx context.Context, url string, names ...string) (map[string]float64, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("scrape %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("scrape %s: %s", url, resp.Status)
	}
	return ParseGauges(resp.Body, names...)
}

// ErrNotExported is ParseGauges's error for a series the exposition lacks, as a
// labelled counter's is until it first counts.
var ErrNotExported = errors.New("not exported")

// ParseGauges reads the series named from a Prometheus text exposition; a series not
// exported is an error (ErrNotExported).
func ParseGauges(r io.Reader, names ...string) (map[string]float64, error) {
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	got := map[string]float64{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), " ")
		if !ok || !want[name] {
			continue
		}
		v, err := strconv.ParseFloat(strings.Fields(value)[0], 64)
		if err != nil {
			return nil, fmt.Errorf("metric %s: %w", name, err)
		}
		got[name] = v
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	for _, n := range names {
		if _, ok := got[n]; !ok {
			return nil, fmt.Errorf("metric %s: %w", n, ErrNotExported)
		}
	}
	return got, nil
}
