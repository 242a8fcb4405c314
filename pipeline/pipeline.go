// Package pipeline runs one body through a configured sequence of stages: transform
// stages in series, each in its own goroutine between io.Pipes, with observers tapped
// at any point. It knows nothing about gRPC or Envoy.
package pipeline

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/textproto"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bodystream/bodystream/stage"
)

// Pipeline is a built, immutable sequence of steps. Observers (hash, scan, file) see
// the bytes at the point where they stand: before the first transform, between two,
// or after the last.
type Pipeline struct {
	// Name is the pipeline's name in the configuration, for metrics and logs.
	Name  string
	Steps []stage.Spec
	// FlushDelay is how long a stage that asked for it (stage.IdleNotifier) waits for
	// more input before it is told to flush; 0 never tells it.
	FlushDelay time.Duration
}

// PreviewSize is the largest preview any step asks for to plan message m.
func (p *Pipeline) PreviewSize(m *stage.Message) int {
	size := 0
	for _, s := range p.Steps {
		size = max(size, s.PreviewSize(m))
	}
	return size
}

var (
	errAborted = errors.New("pipeline: run aborted")
	errClosed  = errors.New("pipeline: run already closed")
)

// Start plans every step for message m (each step sees the headers as edited by the
// ones before it) and starts the transform stages. Output goes to out; a blocking out
// is the backpressure that stops the stages and then Write. Cancelling ctx ends every
// stage goroutine.
//
// The preview describes the body as it enters the pipeline, so only the steps before
// the first transform stage get it; the ones after it plan without a preview.
func (p *Pipeline) Start(ctx context.Context, m *stage.Message, preview []byte, out io.Writer) (*Run, error) {
	r := &Run{}
	msg := *m
	msg.Header = make(textproto.MIMEHeader, len(m.Header)+1)
	for k, v := range m.Header {
		msg.Header[k] = v // edits replace whole values, so sharing them is safe
	}

	// tapped[i] are the observers in front of transform i; the last entry, those
	// behind the last transform.
	tapped := [][]namedObserver{nil}
	var transforms []namedStage
	for _, spec := range p.Steps {
		step, err := spec.Plan(&msg, preview)
		if err != nil {
			r.abortObservers()
			return nil, fmt.Errorf("stage %s: %w", spec.Name(), err)
		}
		switch {
		case step.Transformer != nil:
			transforms = append(transforms, namedStage{spec.Name(), step.Transformer})
			tapped = append(tapped, nil)
			preview = nil
		case step.Observer != nil:
			o := namedObserver{spec.Name(), step.Observer}
			r.observers = append(r.observers, o)
			tapped[len(tapped)-1] = append(tapped[len(tapped)-1], o)
		}
		r.edit = r.edit.Then(step.Edit)
		applyEdit(msg.Header, step.Edit)
	}

	r.out.w = out
	if len(transforms) == 0 {
		r.input = r.tee(tapped[0], &r.out)
		return r, nil
	}
	r.counts = make([]stageCount, len(transforms))
	r.pipes = make([]pipe, len(transforms))
	for i := range r.pipes {
		r.pipes[i].r, r.pipes[i].w = newPipe(p.FlushDelay)
	}
	r.input = r.tee(tapped[0], r.pipes[0].w)
	for i, t := range transforms {
		var next *pipeWriter
		var dst io.Writer = &r.out
		if i+1 < len(r.pipes) {
			next = r.pipes[i+1].w
			dst = next
		}
		src := r.pipes[i].r
		dst = r.tee(tapped[i+1], dst)
		count := &r.counts[i]
		count.name = t.name
		r.stages.Go(func() { r.runStage(t, count, dst, src, next) })
	}

	ctxWatched := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		defer close(ctxWatched)
		r.fail(context.Cause(ctx))
	})
	r.wait = sync.OnceFunc(func() {
		r.stages.Wait()
		if !stop() {
			<-ctxWatched // the callback started: wait until it is done
		}
	})
	return r, nil
}

// applyEdit applies e to h the way the server will apply it to the message.
func applyEdit(h textproto.MIMEHeader, e stage.HeaderEdit) {
	if e.ContentEncoding != nil {
		if *e.ContentEncoding == "" {
			h.Del("Content-Encoding")
		} else {
			h.Set("Content-Encoding", *e.ContentEncoding)
		}
	}
	if e.ChangesLength {
		h.Del("Content-Length")
	}
	setOrDelete(h, "Vary", e.Vary)
	setOrDelete(h, "Etag", e.ETag)
}

// setOrDelete sets h's key to *v, deletes it when *v is empty, and leaves it when v
// is nil.
func setOrDelete(h textproto.MIMEHeader, key string, v *string) {
	switch {
	case v == nil:
	case *v == "":
		h.Del(key)
	default:
		h.Set(key, *v)
	}
}

type namedStage struct {
	name string
	stage.Transformer
}

type namedObserver struct {
	name string
	stage.Observer
}

type pipe struct {
	r *pipeReader
	w *pipeWriter
}

// Run is one body flowing through a pipeline.
type Run struct {
	edit      stage.HeaderEdit
	observers []namedObserver
	// input is where Write goes: the observers in front of the first transform, then
	// the first pipe, or out when no transform runs.
	input io.Writer
	// pipes[i] feeds transform i.
	pipes  []pipe
	stages sync.WaitGroup
	// wait waits for the stages and the context watcher; nil when nothing runs.
	wait func()

	// The first error is kept here rather than in an errgroup: it may come from Write
	// or an observer as well as from a stage, and what stops the stages, which take no
	// context, is closing every pipe with it.
	mu     sync.Mutex
	err    error // the first error; it closed every pipe
	closed bool  // Close or Abort was called

	// Byte accounting, for Check: what Write took, and what each transform read and
	// wrote. A stage goroutine counts its own; Close reads them after the stages ended.
	in     atomic.Int64
	counts []stageCount
	out    countingWriter
}

// stageCount is what one transform stage read from its input and wrote to its output.
type stageCount struct {
	name      string
	read      int64
	written   int64
	completed bool // Transform returned nil
}

// Edit is the combined header edit of the planned steps.
func (r *Run) Edit() stage.HeaderEdit { return r.edit }

// Identity reports that no transform stage runs: output equals input byte for byte.
func (r *Run) Identity() bool { return len(r.pipes) == 0 }

// Write feeds body bytes. It returns once the first stage has taken them, or with the
// pipeline's first error once it failed.
func (r *Run) Write(p []byte) (int, error) {
	r.mu.Lock()
	err, closed := r.err, r.closed
	r.mu.Unlock()
	switch {
	case err != nil:
		return 0, err
	case closed:
		return 0, errClosed
	}
	n, err := r.input.Write(p)
	r.in.Add(int64(n))
	if err != nil {
		return n, r.fail(err)
	}
	return n, nil
}

// Close ends the input, waits until every stage has finished and written all its
// output to out, then finishes the observers. It returns their merged results and the
// first error, which names its stage ("stage gzip: ...") and wraps the cause.
func (r *Run) Close() (stage.Result, error) {
	r.mu.Lock()
	closed := r.closed
	r.closed = true
	r.mu.Unlock()
	if closed {
		return stage.Result{}, errClosed
	}

	if len(r.pipes) > 0 {
		r.pipes[0].w.Close()
	}
	err := r.waitStages()
	var result stage.Result
	for _, o := range r.observers {
		if err != nil {
			break
		}
		res, finishErr := o.Finish()
		if finishErr != nil {
			err = r.fail(fmt.Errorf("stage %s: %w", o.name, finishErr))
		}
		result.Merge(res)
	}
	if err != nil {
		r.abortObservers()
		return stage.Result{}, err
	}
	return result, nil
}

// Abort stops the run with err, aborts the observers and waits for every goroutine.
// It is safe to call after Close and more than once.
func (r *Run) Abort(err error) {
	if err == nil {
		err = errAborted
	}
	r.fail(err)
	r.waitStages()

	r.mu.Lock()
	closed := r.closed
	r.closed = true
	r.mu.Unlock()
	if !closed { // else Close finished or aborted the observers
		r.abortObservers()
	}
}

// runStage runs transform t from src to dst. Its error fails the run; its success ends
// the next stage's input.
func (r *Run) runStage(t namedStage, count *stageCount, dst io.Writer, src *pipeReader, next *pipeWriter) {
	out := &countingWriter{w: dst}
	err := t.Transform(out, src)
	count.read, count.written, count.completed = src.p.handed, out.n, err == nil
	if err != nil {
		r.fail(fmt.Errorf("stage %s: %w", t.name, err))
		return
	}
	// A stage that returns before its input ended would leave the writer in front of
	// it blocked forever.
	src.CloseWithError(fmt.Errorf("stage %s: returned before the end of its input", t.name))
	if next != nil {
		next.Close()
	}
}

// fail records err unless an error came first, closes every pipe with the first error
// so that every stage and Write return, and returns the first error.
func (r *Run) fail(err error) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err == nil {
		r.err = err
		for _, p := range r.pipes {
			p.r.CloseWithError(err)
			p.w.CloseWithError(err)
		}
	}
	return r.err
}

// waitStages waits for every goroutine of the run and returns its first error.
func (r *Run) waitStages() error {
	if r.wait != nil {
		r.wait()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.err
}

func (r *Run) abortObservers() {
	for _, o := range r.observers {
		o.Abort()
	}
}

// tee returns a writer that shows each write to the observers, then passes it to next.
func (r *Run) tee(observers []namedObserver, next io.Writer) io.Writer {
	if len(observers) == 0 {
		return next
	}
	return &tee{run: r, observers: observers, next: next}
}

type tee struct {
	run       *Run
	observers []namedObserver
	next      io.Writer
}

func (t *tee) Write(p []byte) (int, error) {
	for _, o := range t.observers {
		n, err := o.Write(p)
		if err == nil && n < len(p) {
			err = io.ErrShortWrite
		}
		if err != nil {
			return 0, t.run.fail(fmt.Errorf("stage %s: %w", o.name, err))
		}
	}
	return t.next.Write(p)
}

// MemoryEstimate is the most memory one body of m holds in the pipeline's stages.
func (p *Pipeline) MemoryEstimate(m *stage.Message) int64 {
	var total int64
	for _, s := range p.Steps {
		total += stage.EstimateMemory(s, m)
	}
	return total
}
