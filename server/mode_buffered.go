package server

import (
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"

	"github.com/bodystream/bodystream/stage"
)

// receivedCopies: a BUFFERED body is one message of up to max_buffered_body bytes,
// and receiving it holds this many copies of it at the peak: grpc-go's frames and the
// codec's contiguous copy of the message, which the body is read from in place
// (recv.go). Its reservation is made at the headers, before Envoy sends it.
const receivedCopies = 2

// replyCopies: a transformed BUFFERED body's output is held twice, in the reply
// buffer that gathers it and in the marshalled reply. A request reserves room for an
// output as large as its body at the headers (a compressor's output is about that), so
// that its 503, if any, comes before the body moves. A response's output is reserved
// as it is gathered: its upstream may have carried out the request, so it is never
// refused for lack of budget, and passing it through untouched needs no output.
const replyCopies = 2

// replyGrowStep is the least a BUFFERED output's reservation grows by when the output
// outgrows what was reserved for it (a decompressor's).
const replyGrowStep = 1 << 20

// bufferedMode is BUFFERED and BUFFERED_PARTIAL: Envoy sends the whole body (or, when
// it did not fit Envoy's buffer in BUFFERED_PARTIAL, its first part) in one message
// and waits for one reply. The body's reservation is made at the headers, and the
// headers are answered only once it is: Envoy sends the body only after that answer,
// so the body arrives counted.
type bufferedMode struct {
	d       *direction
	replies replyBuffer
	// replyShare is the part of the reservation that stands for the output: it goes
	// with the reply to the send loop, which releases it once the reply is serialised.
	replyShare atomic.Int64
	// oversized: a response whose content-length exceeds max_buffered_body passes
	// through unprocessed (its upstream has carried out the request: no 413 then).
	oversized bool
}

// headers reserves the body's memory, then answers with no edit: the edits travel
// with the body response, where Envoy still applies them and where the new
// content-length is known.
func (m *bufferedMode) headers() error {
	d := m.d
	if cl, err := strconv.ParseInt(d.header.Get(contentLength), 10, 64); err == nil && cl > int64(d.st.srv.opts.MaxBufferedBody) {
		if err := m.refuseOversized(cl); err != nil {
			return err
		}
		return d.answerHeaders(stage.HeaderEdit{})
	}
	if err := m.d.reserve(m.d.need()); err != nil {
		return err
	}
	return m.d.answerHeaders(stage.HeaderEdit{})
}

// size is the body's length as far as it is known: the content-length, else
// max_buffered_body; the length of a body that came without headers.
func (m *bufferedMode) size() int64 {
	d := m.d
	limit := int64(d.st.srv.opts.MaxBufferedBody)
	if !d.sawHeaders && d.bodyHint >= 0 {
		return min(int64(d.bodyHint), limit)
	}
	if cl, err := strconv.ParseInt(d.header.Get(contentLength), 10, 64); err == nil && cl >= 0 {
		return min(cl, limit)
	}
	return limit
}

func (m *bufferedMode) body(b *extprocv3.HttpBody) error {
	d := m.d
	if d.sawBody {
		return d.violation("second body message in %s mode: expected one", modeName(d.mode))
	}
	body := b.GetBody()
	if m.oversized {
		d.ended = b.GetEndOfStream()
		return d.complete(bodyResponse(d.dir, nil, nil, stage.Result{}))
	}
	if n := int64(len(body)); n > int64(d.st.srv.opts.MaxBufferedBody) {
		if err := m.refuseOversized(n); err != nil {
			return err
		}
		d.ended = b.GetEndOfStream()
		return d.complete(bodyResponse(d.dir, nil, nil, stage.Result{}))
	}
	if room := m.size(); int64(len(body)) > room {
		return d.violation("body of %d bytes is larger than the %d bytes reserved for it at the headers (content-length, else max_buffered_body): expected at most that", len(body), room)
	}
	preview := body[:min(len(body), d.previewSize())]
	if err := d.start(preview, &m.replies); err != nil {
		return err
	}
	// Envoy keeps its own copy of an unchanged body: nothing is gathered.
	m.replies.discard = d.run.Identity()
	output := d.takeReservation(m.outputMemory())
	if m.replies.discard {
		d.st.srv.budget.release(output)
	} else {
		m.replyShare.Store(output)
		m.replies.room = int(output / replyCopies)
		m.replies.grow = m.grow
	}
	if d.mode == modePartial && !b.GetEndOfStream() && !d.run.Identity() {
		// Only a prefix is here and the rest will pass Envoy unprocessed: transforming
		// the prefix would corrupt the body, so it passes untouched.
		d.run.Abort(errors.New("BUFFERED_PARTIAL body exceeds Envoy's buffer: passed through untransformed"))
		d.st.srv.log.Info("BUFFERED_PARTIAL body larger than Envoy's buffer passed through untransformed", "request_id", d.st.requestID, "direction", d.dir)
		d.ended = true
		return d.complete(bodyResponse(d.dir, nil, nil, stage.Result{}))
	}
	err := d.write(body)
	var result stage.Result
	if err == nil {
		result, err = d.finish()
	}
	if err != nil {
		if d.dir == stage.Response && errors.Is(err, errReplyOverBudget) {
			return m.passUntouched(b)
		}
		return err
	}
	d.ended = b.GetEndOfStream()
	if d.run.Identity() {
		return d.complete(bodyResponse(d.dir, nil, headerMutation(d.run.Edit(), d.ownHeaders(result)), result))
	}
	out := m.replies.take()
	d.countOut(len(out))
	if err := d.checkReplies(&m.replies); err != nil {
		return err
	}
	mutation := headerMutation(d.run.Edit(), d.ownHeaders(result))
	if d.sawHeaders {
		// Envoy keeps content-length in BUFFERED mode with headers SEND and refuses a
		// body whose length differs from it.
		setHeader(mutation, contentLength, itoa(len(out)))
		mutation.RemoveHeaders = removeString(mutation.RemoveHeaders, contentLength)
	}
	return d.completeHolding(bodyResponse(d.dir, replaceBody(out), mutation, result), m.replyShare.Swap(0))
}

// grow lets the reply buffer hold at least n more bytes, reserving replyCopies of
// them if the budget has them now: refusing, or passing the body through, beats
// waiting with a whole body in hand. It runs in the pipeline's last stage.
func (m *bufferedMode) grow(n int) (int, error) {
	step := max(n, replyGrowStep)
	if !m.d.st.srv.budget.tryAcquire(replyCopies * int64(step)) {
		return 0, errReplyOverBudget
	}
	m.replyShare.Add(replyCopies * int64(step))
	return step, nil
}

// passUntouched answers a response body whose output outgrew the budget with no
// mutation: Envoy forwards its own copy, as passMode does.
func (m *bufferedMode) passUntouched(b *extprocv3.HttpBody) error {
	d := m.d
	d.run.Abort(errReplyOverBudget)
	m.abort()
	m.replies.take()
	d.passedUntouched()
	d.ended = b.GetEndOfStream()
	return d.complete(bodyResponse(d.dir, nil, nil, stage.Result{}))
}

// refuseOversized handles a body of n bytes, more than max_buffered_body: a request
// gets 413 before it moves upstream; a response, whose upstream has carried out the
// request, passes through unprocessed, and that is logged.
func (m *bufferedMode) refuseOversized(n int64) error {
	d := m.d
	limit := d.st.srv.opts.MaxBufferedBody
	if d.dir == stage.Request {
		return stageError{d.dir, fmt.Errorf("%s body of %d bytes exceeds max_buffered_body (%d): %w", modeName(d.mode), n, limit, stage.ErrBodyTooLarge)}
	}
	m.oversized = true
	d.st.srv.log.Info("BUFFERED response larger than max_buffered_body passed through unprocessed",
		"request_id", d.st.requestID, "bytes", n, "max_buffered_body", limit)
	return nil
}

func (m *bufferedMode) trailers() (stage.Result, error) { return stage.Result{}, nil }

// memory: the body as received and, for a request, an output as large.
func (m *bufferedMode) memory() int64 { return receivedCopies*m.size() + m.outputMemory() }

// outputMemory is what a request reserves for its output at the headers (replyCopies).
func (m *bufferedMode) outputMemory() int64 {
	if m.d.dir == stage.Response {
		return 0
	}
	return replyCopies * m.size()
}

func (m *bufferedMode) abort() { m.d.st.srv.budget.release(m.replyShare.Swap(0)) }
