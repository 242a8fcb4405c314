package harness

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"syscall"
	"time"
)

// DrillPhases are the phases of RunReplicaDrill, in order; the kill is the one phase
// in which uploads may fail (those that overlap it, see Outcome).
var DrillPhases = []string{"spread", "drain", "restart-1", "kill", "survivors", "restart-2"}

// DrillKillPhase is the phase whose SIGKILL may fail the uploads in flight.
const DrillKillPhase = "kill"

// RunReplicaDrill runs, on a stack of three replicas under load, what a deployment
// goes through: streams spread over all three; SIGTERM to the first, which turns
// unready, is taken out by Envoy's health checks, drains and exits 0; the first
// restarted on its address gets streams again; SIGKILL to the second while it has
// streams in flight, after which Envoy counts two healthy and new uploads reach
// both survivors; the second restarted gets streams again. It sets load's phase
// as it goes (DrillPhases) and says what it did through logf. An error says which
// step did not happen within its bound.
func RunReplicaDrill(ctx context.Context, s *Stack, load *Load, logf func(format string, args ...any)) error {
	if len(s.Replicas) != 3 {
		return fmt.Errorf("drill: %d replicas, want 3", len(s.Replicas))
	}
	r1, r2, r3 := s.Replicas[0], s.Replicas[1], s.Replicas[2]
	d := drill{ctx: ctx, s: s}
	step := func(phase string) {
		load.SetPhase(phase)
		logf("%s: phase %s", time.Now().Format("15:04:05.000"), phase)
	}

	step("spread")
	if err := d.streamsAtLeast(3, r1, r2, r3); err != nil {
		return err
	}

	step("drain")
	p1 := s.Process(r1.Name)
	if err := p1.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return err
	}
	if err := d.poll(r1.Name+"'s /readyz to turn false", func() (bool, error) {
		resp, err := http.Get("http://" + r1.MetricsAddr + "/readyz")
		if err != nil {
			return true, nil // already gone
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusServiceUnavailable, nil
	}); err != nil {
		return err
	}
	if err := d.healthy(2); err != nil {
		return err
	}
	select {
	case <-p1.Done():
	case <-time.After(pollBound):
		return fmt.Errorf("drill: %s did not exit %s after SIGTERM", r1.Name, pollBound)
	}
	if err := p1.Err(); err != nil {
		return fmt.Errorf("drill: %s after SIGTERM: %w", r1.Name, err)
	}
	log, err := os.ReadFile(p1.LogPath)
	if err != nil {
		return err
	}
	for _, want := range []string{"draining: readiness and gRPC health now NOT_SERVING", "draining: refusing new streams", "drained: every stream finished"} {
		if !strings.Contains(string(log), want) {
			return fmt.Errorf("drill: %s's log lacks %q", r1.Name, want)
		}
	}

	step("restart-1")
	if err := s.Restart(ctx, r1.Name); err != nil {
		return err
	}
	if err := d.healthy(3); err != nil {
		return err
	}
	if err := d.streamsAtLeast(3, r1); err != nil {
		return err
	}

	if err := d.poll(r2.Name+" to have streams in flight", func() (bool, error) {
		n, err := MetricSum(ctx, r2.MetricsAddr, "bodystream_streams_active")
		return n >= 1, err
	}); err != nil {
		return err
	}
	step(DrillKillPhase)
	if err := s.Process(r2.Name).Cmd.Process.Signal(syscall.SIGKILL); err != nil {
		return err
	}
	if err := d.healthy(2); err != nil {
		return err
	}
	// The uploads that were on it end at once; give Envoy's view of the dead
	// replica time to settle before new uploads must all succeed.
	select {
	case <-time.After(3 * time.Second):
	case <-ctx.Done():
		return context.Cause(ctx)
	}

	step("survivors")
	before1, before3, before := d.streams(r1), d.streams(r3), load.Count("survivors", OK)
	if err := d.poll("both survivors to serve new streams", func() (bool, error) {
		return d.streams(r1) >= before1+3 && d.streams(r3) >= before3+3 && load.Count("survivors", OK) >= before+10, d.err
	}); err != nil {
		return err
	}

	step("restart-2")
	if err := s.Restart(ctx, r2.Name); err != nil {
		return err
	}
	if err := d.healthy(3); err != nil {
		return err
	}
	return d.streamsAtLeast(3, r2)
}

// pollBound is how long a drill step may take: generous, for a machine that other
// work shares; it bounds a hang, never asserts speed.
const pollBound = 30 * time.Second

type drill struct {
	ctx context.Context
	s   *Stack
	err error // the first scrape error of streams
}

// poll checks cond every 20 ms until it holds, errs, or pollBound passes.
func (d *drill) poll(what string, cond func() (bool, error)) error {
	ctx, cancel := context.WithTimeoutCause(d.ctx, pollBound, fmt.Errorf("drill: timed out waiting for %s", what))
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		ok, err := cond()
		if err != nil {
			return fmt.Errorf("drill: waiting for %s: %w", what, err)
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-tick.C:
		}
	}
}

// streams returns how many ext_proc streams the replica has ended, any result.
func (d *drill) streams(r *Replica) float64 {
	n, err := MetricSum(d.ctx, r.MetricsAddr, "bodystream_streams_total")
	if err != nil && d.err == nil {
		d.err = fmt.Errorf("%s: %w", r.Name, err)
	}
	return n
}

func (d *drill) streamsAtLeast(n float64, replicas ...*Replica) error {
	var names []string
	for _, r := range replicas {
		names = append(names, r.Name)
	}
	return d.poll(fmt.Sprintf("%s to serve %v streams each", strings.Join(names, ", "), n), func() (bool, error) {
		for _, r := range replicas {
			if d.streams(r) < n {
				return false, d.err
			}
		}
		return true, d.err
	})
}

// healthy waits until Envoy counts n healthy bodystream hosts.
func (d *drill) healthy(n int64) error {
	return d.poll(fmt.Sprintf("Envoy to count %d healthy bodystream replicas", n), func() (bool, error) {
		got, err := d.s.Admin.Stat(d.ctx, "cluster.bodystream.membership_healthy")
		if errors.Is(err, context.Canceled) {
			return false, err
		}
		return err == nil && got == n, nil
	})
}

// DrillTally sorts a drill's outcomes.
type DrillTally struct {
	// ByPhase counts each class by the phase the uploads ended in.
	ByPhase map[string]map[OutcomeClass]int
	// Killed failed while the kill happened (they overlapped it): their client was
	// told. Wrong must be empty: any truncated upload, any other failure.
	Killed, Wrong []Outcome
}

// TallyDrill sorts the outcomes of a load that RunReplicaDrill drove.
func TallyDrill(outcomes []Outcome) DrillTally {
	t := DrillTally{ByPhase: map[string]map[OutcomeClass]int{}}
	kill := slices.Index(DrillPhases, DrillKillPhase)
	for _, o := range outcomes {
		if t.ByPhase[o.Ended] == nil {
			t.ByPhase[o.Ended] = map[OutcomeClass]int{}
		}
		t.ByPhase[o.Ended][o.Class]++
		overlapped := slices.Index(DrillPhases, o.Started) <= kill && slices.Index(DrillPhases, o.Ended) >= kill
		switch {
		case o.Class == Failed && overlapped:
			t.Killed = append(t.Killed, o)
		case o.Class != OK:
			t.Wrong = append(t.Wrong, o)
		}
	}
	return t
}

// String is one line per outcome of Killed and Wrong, and one per phase.
func (t DrillTally) String() string {
	var b strings.Builder
	for _, o := range t.Wrong {
		fmt.Fprintf(&b, "WRONG %s\n", o)
	}
	for _, o := range t.Killed {
		fmt.Fprintf(&b, "failed by the kill: %s\n", o)
	}
	for _, phase := range DrillPhases {
		c := t.ByPhase[phase]
		fmt.Fprintf(&b, "%-10s ok %4d  failed %3d  truncated %d\n", phase, c[OK], c[Failed], c[Truncated])
	}
	return b.String()
}
