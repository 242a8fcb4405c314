package harness

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Load keeps uploading through Envoy from several workers, each upload on the next
// route, protocol and size of its lists, until Stop; it records how each one ended
// and in which phase, for a test that stops and kills processes under it.
type Load struct {
	URL    string     // Envoy's listener
	Routes []string   // paths, e.g. /full-duplex-streamed/echo
	Protos []Protocol // H1, H2
	Sizes  []int64
	// Workers upload as fast as the stack takes it; SlowWorkers send at SlowRate bytes
	// a second, so that some uploads are always in flight.
	Workers, SlowWorkers int
	SlowRate             int

	phase     atomic.Pointer[string]
	stopping  atomic.Bool
	wg        sync.WaitGroup
	mu        sync.Mutex
	outcomes  []Outcome
	transport map[Protocol]*http.Transport
}

// Outcome is how one upload ended.
type Outcome struct {
	// Started and Ended are the phases (see SetPhase) the upload started and ended in:
	// a client may learn only later that its upload failed.
	Started, Ended string
	// Start is when the upload began; Took how long until its response was read.
	Start  time.Time
	Took   time.Duration
	Route  string
	Proto  Protocol
	Size   int64
	Status int
	// Class is OK (200, and the bytes that came back are the bytes sent), Failed (the
	// client was told: an error status, or the request or response broke off) or
	// Truncated (a 200 that ended cleanly with other bytes than were sent: never
	// acceptable).
	Class  OutcomeClass
	Reason string
}

// OutcomeClass says how an upload ended, from the client's point of view.
type OutcomeClass string

const (
	OK        OutcomeClass = "ok"
	Failed    OutcomeClass = "failed"
	Truncated OutcomeClass = "truncated"
)

// SetPhase names what the uploads that end from now on are counted under.
func (l *Load) SetPhase(name string) { l.phase.Store(&name) }

// Start starts the workers; their uploads end with ctx.
func (l *Load) Start(ctx context.Context, phase string) {
	l.SetPhase(phase)
	l.transport = map[Protocol]*http.Transport{}
	for _, p := range l.Protos {
		l.transport[p] = NewTransport(p)
	}
	for w := range l.Workers + l.SlowWorkers {
		l.wg.Go(func() { l.work(ctx, w, w >= l.Workers) })
	}
}

// Stop lets every worker finish its upload, waits for them, and returns all outcomes.
func (l *Load) Stop() []Outcome {
	l.stopping.Store(true)
	l.wg.Wait()
	for _, t := range l.transport {
		t.CloseIdleConnections()
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.outcomes
}

// Count returns how many uploads ended in phase with class so far.
func (l *Load) Count(phase string, class OutcomeClass) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, o := range l.outcomes {
		if o.Ended == phase && o.Class == class {
			n++
		}
	}
	return n
}

func (l *Load) work(ctx context.Context, worker int, slow bool) {
	for i := 0; !l.stopping.Load() && ctx.Err() == nil; i++ {
		n := worker + i*(l.Workers+l.SlowWorkers)
		route, proto, size := l.Routes[n%len(l.Routes)], l.Protos[(n/len(l.Routes))%len(l.Protos)], l.Sizes[n%len(l.Sizes)]
		started, start := *l.phase.Load(), time.Now()
		o := l.upload(ctx, route, proto, size, uint64(n), slow)
		o.Started, o.Ended, o.Start, o.Took = started, *l.phase.Load(), start, time.Since(start)
		l.mu.Lock()
		l.outcomes = append(l.outcomes, o)
		l.mu.Unlock()
	}
}

func (l *Load) upload(ctx context.Context, route string, proto Protocol, size int64, seed uint64, slow bool) Outcome {
	o := Outcome{Route: route, Proto: proto, Size: size}
	body, err := NewBody(BodyRandom, size, seed, "")
	if err != nil {
		o.Class, o.Reason = Failed, err.Error()
		return o
	}
	var r io.Reader = body
	if slow {
		r = &paced{ctx: ctx, r: body, rate: l.SlowRate}
	}
	res, err := Upload(ctx, l.transport[proto], Request{URL: l.URL + route, Body: r, Length: size,
		Header: http.Header{"Content-Type": {body.ContentType()}}})
	o.Status = res.Status
	verify := res.Verify(body.Sent())
	switch {
	case err == nil && res.Status == http.StatusOK && verify == nil:
		o.Class = OK
	case err == nil && res.Status == http.StatusOK && res.EndedCleanly():
		o.Class, o.Reason = Truncated, verify.Error()
	case err != nil:
		o.Class, o.Reason = Failed, err.Error()
	default:
		o.Class, o.Reason = Failed, fmt.Sprintf("status %d: %q", res.Status, res.Head)
	}
	return o
}

// paced reads from r at about rate bytes a second, in pieces of 16 KiB: a slow
// client. It stops waiting when ctx ends.
type paced struct {
	ctx  context.Context
	r    io.Reader
	rate int
}

func (p *paced) Read(b []byte) (int, error) {
	b = b[:min(len(b), 16<<10)]
	t := time.NewTimer(time.Duration(len(b)) * time.Second / time.Duration(p.rate))
	defer t.Stop()
	select {
	case <-p.ctx.Done():
		return 0, p.ctx.Err()
	case <-t.C:
	}
	return p.r.Read(b)
}

func (o Outcome) String() string {
	return fmt.Sprintf("%s (%s to %s): %s %s %d bytes: status %d: %s", o.Class, o.Started, o.Ended, o.Proto, o.Route, o.Size, o.Status, o.Reason)
}
