package server

import (
	"errors"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"

	"github.com/bodystream/bodystream/stage"
)

// errTrailersAfterStreamedTransform: in STREAMED mode every body chunk has had its
// one reply by the time trailers arrive, so the tail of a transformed body (a gzip
// footer) has nowhere to go. Failing beats forwarding a truncated body.
var errTrailersAfterStreamedTransform = errors.New("a transformed body in STREAMED mode cannot end with trailers: its last bytes have no reply left to ride on; use FULL_DUPLEX_STREAMED for messages with trailers")

// streamedMode is STREAMED: Envoy sends the body in chunks and waits for one reply per
// chunk, in order. Each reply carries what the pipeline wrote since the last one.
type streamedMode struct {
	d       *direction
	replies replyBuffer
}

// headers starts the pipeline at once: Envoy waits for this answer before it sends
// body, so no preview is possible.
func (m *streamedMode) headers() error {
	if err := m.start(); err != nil {
		return err
	}
	return m.d.answerHeaders(m.d.run.Edit())
}

func (m *streamedMode) start() error {
	if err := m.d.start(nil, &m.replies); err != nil {
		return err
	}
	// Envoy keeps its own copy in STREAMED mode: an unchanged body need not travel
	// back, nor be gathered here.
	m.replies.discard = m.d.run.Identity()
	return nil
}

func (m *streamedMode) body(b *extprocv3.HttpBody) error {
	d := m.d
	if d.run == nil { // header mode SKIP
		if err := m.start(); err != nil {
			return err
		}
	}
	if err := d.write(b.GetBody()); err != nil {
		return err
	}
	var result stage.Result
	if b.GetEndOfStream() {
		d.ended = true
		var err error
		if result, err = d.finish(); err != nil {
			return err
		}
	}
	if d.run.Identity() {
		// Envoy forwards its own copy of the chunk: no bytes travel back.
		resp := bodyResponse(d.dir, nil, nil, result)
		if d.ended {
			return d.complete(resp)
		}
		return d.st.enqueue(outgoing{resp: resp})
	}
	out := m.replies.take()
	d.countOut(len(out))
	resp := bodyResponse(d.dir, replaceBody(out), nil, result)
	if d.ended {
		if err := d.checkReplies(&m.replies); err != nil {
			return err
		}
		return d.complete(resp)
	}
	return d.st.enqueue(outgoing{resp: resp})
}

func (m *streamedMode) trailers() (stage.Result, error) {
	d := m.d
	if d.run == nil {
		return stage.Result{}, nil
	}
	result, err := d.finish()
	if err != nil {
		return result, err
	}
	if !d.run.Identity() && len(m.replies.take()) > 0 {
		return result, stageError{d.dir, errTrailersAfterStreamedTransform}
	}
	return result, d.checkReplies(&m.replies)
}

// memory: the output gathered for one reply, about a chunk.
func (m *streamedMode) memory() int64 { return int64(m.d.st.srv.opts.ChunkSize) }

func (m *streamedMode) abort() {}
