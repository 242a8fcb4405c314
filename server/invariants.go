package server

import (
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"

	"github.com/bodystream/bodystream/chunker"
	"github.com/bodystream/bodystream/stage"
)

// The invariants below are what "never pass a truncated body off as complete" means
// inside bodystream. They are checked on every body: the counts cost a few additions
// per message, and a body that breaks one is failed rather than forwarded.
//
//   - pipeline: every byte written into the pipeline went through every stage
//     (pipeline.Run.Check);
//   - output: every byte the pipeline wrote went to Envoy: the chunker emitted all
//     it was given, or the replies carried all the reply buffer gathered;
//   - end_of_stream: a message that ends a body (end_of_stream, or the reply to the
//     last chunk, or trailers) goes out only after the body completed, which it does
//     only once the two checks above passed. So a direction that failed, and a
//     stream that ends with an error, never sends one.
//
// A violation is logged with the request id, counted in
// bodystream_invariant_violations_total{invariant} and fails the stream.

// errInvariant marks a broken invariant: a bug in bodystream, never in the body.
var errInvariant = errors.New("internal invariant violated")

// Invariant names, the metric's label values.
const (
	invariantPipeline    = "pipeline_accounting"
	invariantOutput      = "output_accounting"
	invariantEndOfStream = "end_of_stream_before_complete"
)

// bodyCounts is what one direction moved, for the invariants and the stream's
// end line. out is written by the pipeline's goroutines and read by the send
// loop, hence atomics.
type bodyCounts struct {
	in       atomic.Int64 // body bytes received from Envoy
	out      atomic.Int64 // body bytes sent back to Envoy
	complete atomic.Bool  // the body ended and passed every check
	ended    atomic.Bool  // a message that ends the body went to Envoy
}

// violated logs and counts a broken invariant and returns the error that fails the
// direction.
func (d *direction) violated(invariant string, err error) error {
	d.st.srv.metrics.invariantViolations.WithLabelValues(invariant).Inc()
	d.st.srv.log.Error("invariant violated", "request_id", d.st.requestID, "direction", d.dir,
		"invariant", invariant, "err", err)
	return stageError{d.dir, fmt.Errorf("%w: %s: %w", errInvariant, invariant, err)}
}

// checkPipeline verifies the pipeline's own accounting after a successful Close.
func (d *direction) checkPipeline() error {
	if err := d.run.Check(); err != nil {
		return d.violated(invariantPipeline, err)
	}
	return nil
}

// checkChunker verifies, after the chunker closed, that it emitted every byte the
// pipeline wrote.
func (d *direction) checkChunker(chunks *chunker.Chunker) error {
	written, emitted := chunks.Counts()
	if out := d.run.BytesOut(); written != out || emitted != written {
		return d.violated(invariantOutput, fmt.Errorf("pipeline wrote %d bytes, chunker took %d and emitted %d", out, written, emitted))
	}
	return nil
}

// checkReplies verifies, after the last reply's Take, that the replies carry every
// byte the pipeline wrote.
func (d *direction) checkReplies(replies *replyBuffer) error {
	if d.run.Identity() {
		return nil // Envoy forwards its own copy; Check saw in == out
	}
	if out, taken := d.run.BytesOut(), replies.taken; out != taken {
		return d.violated(invariantOutput, fmt.Errorf("pipeline wrote %d bytes, replies carry %d", out, taken))
	}
	return nil
}

// checkEnding runs in the send loop before a message that ends direction dir's body.
func (st *stream) checkEnding(dir stage.Direction) error {
	d := st.dirs[dir]
	if d.counts.complete.Load() {
		d.counts.ended.Store(true)
		return nil
	}
	err := fmt.Errorf("%w: %s: %s body: a message ending the body was about to be sent for a body that did not complete", errInvariant, invariantEndOfStream, dir)
	st.srv.metrics.invariantViolations.WithLabelValues(invariantEndOfStream).Inc()
	st.srv.log.Error("invariant violated", "request_id", st.requestID, "direction", dir,
		"invariant", invariantEndOfStream, "err", err)
	return err
}

// pipelineName is the name of the direction's pipeline, "" before the route is known.
func (d *direction) pipelineName() string {
	if p := d.pipeline(); p != nil {
		return p.Name
	}
	return ""
}

// summary describes what this direction moved, for the stream's end line: the
// stress run's forensics read it to find where bytes went missing.
func (d *direction) summary() slog.Value {
	attrs := []slog.Attr{
		slog.String("mode", modeName(d.mode)),
		slog.String("pipeline", d.pipelineName()),
		slog.Int64("in", d.counts.in.Load()),
		slog.Int64("out", d.counts.out.Load()),
		slog.Bool("complete", d.counts.complete.Load()),
		slog.Bool("ended", d.counts.ended.Load()),
	}
	if d.run != nil {
		// Every stage has stopped by the time the stream's line is written.
		attrs = append(attrs, slog.Bool("identity", d.run.Identity()),
			slog.Int64("pipeline_in", d.run.BytesIn()), slog.Int64("pipeline_out", d.run.BytesOut()))
	}
	return slog.GroupValue(attrs...)
}
