// Package pipeline runs one body through a configured sequence of stages: transform
// stages in series, each in its own goroutine between io.Pipes, with observers tapped
// at any point. It knows nothing about gRPC or Envoy.
package pipeline

import (
	"context"
	"io"

	"github.com/bodystream/bodystream/stages"
)

// Pipeline is a named, validated sequence of steps. Observers (hash, scan, file) see
// the bytes at the point where they stand: before the first transform, between two,
// or after the last.
type Pipeline struct {
	Name  string
	Steps []stages.Spec
}

// PreviewSize is the largest preview any step asks for.
func (p *Pipeline) PreviewSize() int {
	size := 0
	for _, s := range p.Steps {
		size = max(size, s.PreviewSize())
	}
	return size
}

// Start plans every step for message m (each step sees the headers as edited by the
// ones before it) and starts the transform stages. Output goes to out; a blocking out
// is the backpressure that stops the stages and then Write. Cancelling ctx ends every
// stage goroutine.
func (p *Pipeline) Start(ctx context.Context, m *stages.Message, preview []byte, out io.Writer) (*Run, error) {
	panic("TODO")
}

// Run is one body flowing through a pipeline.
type Run struct{}

// Edit is the combined header edit of the planned steps.
func (r *Run) Edit() stages.HeaderEdit { panic("TODO") }

// Identity reports that no transform stage runs: output equals input byte for byte.
func (r *Run) Identity() bool { panic("TODO") }

// Write feeds body bytes. It returns once the first stage has taken them, or with the
// pipeline's first error once it failed.
func (r *Run) Write(p []byte) (int, error) { panic("TODO") }

// Close ends the input, waits until every stage has finished and written all its
// output to out, then finishes the observers. It returns their merged results and the
// first error, which names its stage ("stage gzip: ...") and wraps the cause.
func (r *Run) Close() (stages.Result, error) { panic("TODO") }

// Abort stops the run with err, aborts the observers and waits for every goroutine.
// It is safe to call after Close and more than once.
func (r *Run) Abort(err error) { panic("TODO") }
