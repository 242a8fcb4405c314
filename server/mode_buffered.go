package server

import (
	"errors"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"

	"github.com/bodystream/bodystream/stage"
)

// bufferedMode is BUFFERED and BUFFERED_PARTIAL: Envoy sends the whole body (or, when
// it did not fit Envoy's buffer in BUFFERED_PARTIAL, its first part) in one message
// and waits for one reply.
type bufferedMode struct {
	d       *direction
	replies replyBuffer
}

// headers answers at once with no edit: the edits travel with the body response,
// where Envoy still applies them and where the new content-length is known.
func (m *bufferedMode) headers() error { return m.d.answerHeaders(stage.HeaderEdit{}) }

func (m *bufferedMode) body(b *extprocv3.HttpBody) error {
	d := m.d
	if d.sawBody {
		return d.violation("second body message in %s mode: expected one", modeName(d.mode))
	}
	body := b.GetBody()
	preview := body[:min(len(body), d.previewSize())]
	if err := d.start(preview, &m.replies); err != nil {
		return err
	}
	m.replies.discard = d.run.Identity()
	if d.mode == modePartial && !b.GetEndOfStream() && !d.run.Identity() {
		// Only a prefix is here and the rest will pass Envoy unprocessed: transforming
		// the prefix would corrupt the body, so it passes untouched.
		d.run.Abort(errors.New("BUFFERED_PARTIAL body exceeds Envoy's buffer: passed through untransformed"))
		d.st.srv.log.Info("BUFFERED_PARTIAL body larger than Envoy's buffer passed through untransformed", "request_id", d.st.requestID, "direction", d.dir)
		d.ended = true
		return d.complete(bodyResponse(d.dir, nil, nil, stage.Result{}))
	}
	if err := d.write(body); err != nil {
		return err
	}
	result, err := d.finish()
	if err != nil {
		return err
	}
	d.ended = b.GetEndOfStream()
	if d.run.Identity() {
		return d.complete(bodyResponse(d.dir, nil, headerMutation(d.run.Edit(), result.Headers), result))
	}
	out := m.replies.take()
	d.countOut(len(out))
	if err := d.checkReplies(&m.replies); err != nil {
		return err
	}
	mutation := headerMutation(d.run.Edit(), result.Headers)
	if d.sawHeaders {
		// Envoy keeps content-length in BUFFERED mode with headers SEND and refuses a
		// body whose length differs from it.
		setHeader(mutation, contentLength, itoa(len(out)))
		mutation.RemoveHeaders = removeString(mutation.RemoveHeaders, contentLength)
	}
	return d.complete(bodyResponse(d.dir, replaceBody(out), mutation, result))
}

func (m *bufferedMode) trailers() (stage.Result, error) { return stage.Result{}, nil }

// memory: the body's length is not known yet, and its output may be as large.
func (m *bufferedMode) memory() int64 { return int64(m.d.st.srv.opts.MaxBufferedBody) }

func (m *bufferedMode) abort() {}
