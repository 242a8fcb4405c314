package server

import (
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"

	"github.com/bodystream/bodystream/chunker"
	"github.com/bodystream/bodystream/stage"
)

// fullDuplexMode is FULL_DUPLEX_STREAMED: M body chunks in, N bounded messages out,
// and a last message with end_of_stream. It holds the header response and the first
// chunks until the pipeline has the preview it asked for.
type fullDuplexMode struct {
	d           *direction
	headersHeld bool
	// held is a copy of the body received before the preview was complete: the
	// received messages' bodies are views into receive buffers that go back to the
	// pool once each message is handled (recv.go).
	held   []byte
	chunks *chunker.Chunker
}

func (m *fullDuplexMode) headers() error {
	if m.d.previewSize() > 0 {
		m.headersHeld = true // answered once the preview is in
		return nil
	}
	if err := m.start(); err != nil {
		return err
	}
	return m.d.answerHeaders(m.d.run.Edit())
}

func (m *fullDuplexMode) body(b *extprocv3.HttpBody) error {
	d := m.d
	if d.run == nil {
		m.held = append(m.held, b.GetBody()...)
		if len(m.held) < d.previewSize() && !b.GetEndOfStream() {
			return nil
		}
		if err := m.start(); err != nil {
			return err
		}
	} else if err := d.write(b.GetBody()); err != nil {
		return err
	}
	if !b.GetEndOfStream() {
		return nil
	}
	d.ended = true
	result, err := m.finish()
	if err != nil {
		return err
	}
	return d.complete(streamedBodyResponse(d.dir, nil, true, result))
}

func (m *fullDuplexMode) trailers() (stage.Result, error) {
	if m.d.run == nil { // no body, or less than the preview
		if err := m.start(); err != nil {
			return stage.Result{}, err
		}
	}
	return m.finish()
}

// start starts the pipeline with the held preview, answers the held headers, then
// feeds the held body.
func (m *fullDuplexMode) start() error {
	d := m.d
	// Reserved before the chunker exists, so that a response without budget passes
	// through with nothing to undo.
	if err := d.reserve(d.need()); err != nil {
		return err
	}
	m.chunks = chunker.New(d.st.srv.pool, d.st.srv.opts.FlushDelay, m.emit)
	if err := d.start(m.held[:min(len(m.held), d.previewSize())], m.chunks); err != nil {
		return err
	}
	if m.headersHeld {
		m.headersHeld = false
		if err := d.answerHeaders(d.run.Edit()); err != nil {
			return err
		}
	}
	held := m.held
	m.held = nil
	if len(held) == 0 {
		return nil
	}
	return d.write(held)
}

// finish drains the pipeline and flushes every message it produced.
func (m *fullDuplexMode) finish() (stage.Result, error) {
	d := m.d
	result, err := d.finish()
	if err != nil {
		return result, err
	}
	if err := m.chunks.Close(); err != nil {
		return result, stageError{d.dir, err}
	}
	if err := d.checkChunker(m.chunks); err != nil {
		return stage.Result{}, err
	}
	return result, nil
}

// emit sends one chunker message; it blocks while the send queue is full.
func (m *fullDuplexMode) emit(msg []byte) error {
	d := m.d
	d.countOut(len(msg))
	return d.st.enqueue(outgoing{resp: streamedBodyResponse(d.dir, msg, false, stage.Result{}), buf: msg})
}

// memory: the chunker's buffer; the messages queued and in Send are the stream's
// (transportHolds).
func (m *fullDuplexMode) memory() int64 { return int64(m.d.st.srv.opts.ChunkSize) }

func (m *fullDuplexMode) abort() {
	if m.chunks != nil {
		m.chunks.Close() // emits nothing: the stream's context is done or the body complete
	}
}
