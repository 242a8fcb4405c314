package pipeline

import (
	"errors"
	"fmt"
	"io"
)

// ErrAccounting marks a run whose byte counts do not add up: a stage lost or invented
// bytes between its input and the next stage's. It is a bug in bodystream, never in
// the body, and a body with it must not be passed on as complete.
var ErrAccounting = errors.New("pipeline: byte accounting does not add up")

// BytesIn is how many body bytes Write took.
func (r *Run) BytesIn() int64 { return r.in.Load() }

// BytesOut is how many bytes the run wrote to its output.
func (r *Run) BytesOut() int64 { return r.out.n }

// Check verifies, after a successful Close, that every byte written into the run went
// through each transform: the first stage read all that Write took, each stage read
// all its predecessor wrote, and every stage ran to the end of its input. Without
// transforms, what went out equals what came in. The error wraps ErrAccounting and
// names the stage.
func (r *Run) Check() error {
	if err := r.waitStages(); err != nil {
		return fmt.Errorf("check after a failed run: %w", err)
	}
	fed, from := r.in.Load(), "written into the pipeline"
	for _, c := range r.counts {
		switch {
		case !c.completed:
			return fmt.Errorf("%w: stage %s did not finish", ErrAccounting, c.name)
		case c.read != fed:
			return fmt.Errorf("%w: stage %s read %d bytes, %d were %s", ErrAccounting, c.name, c.read, fed, from)
		}
		fed, from = c.written, "written by stage "+c.name
	}
	if r.out.n != fed {
		return fmt.Errorf("%w: %d bytes reached the output, %d were %s", ErrAccounting, r.out.n, fed, from)
	}
	return nil
}

// countingWriter counts what w accepted. The output's count is read by Check after
// the stages ended, or by the writer's own goroutine when no transform runs.
type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
