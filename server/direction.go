package server

import (
	"errors"
	"io"
	"net/textproto"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	filterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/bodystream/bodystream/chunker"
	"github.com/bodystream/bodystream/pipeline"
	"github.com/bodystream/bodystream/stage"
)

// Body modes, named as in envoy.yaml.
const (
	modeNone        = filterv3.ProcessingMode_NONE
	modeStreamed    = filterv3.ProcessingMode_STREAMED
	modeBuffered    = filterv3.ProcessingMode_BUFFERED
	modePartial     = filterv3.ProcessingMode_BUFFERED_PARTIAL
	modeFullDuplex  = filterv3.ProcessingMode_FULL_DUPLEX_STREAMED
	contentEncoding = "content-encoding"
	contentLength   = "content-length"
)

// errTrailersAfterStreamedTransform: in STREAMED mode every body chunk has had its
// one reply by the time trailers arrive, so the tail of a transformed body (a gzip
// footer) has nowhere to go. Failing beats forwarding a truncated body.
var errTrailersAfterStreamedTransform = errors.New("a transformed body in STREAMED mode cannot end with trailers: its last bytes have no reply left to ride on; use FULL_DUPLEX_STREAMED for messages with trailers")

// direction is the state machine of one direction (request or response) of a stream.
type direction struct {
	st   *stream
	dir  stage.Direction
	mode filterv3.ProcessingMode_BodySendMode

	sawHeaders, sawBody, ended bool
	header                     textproto.MIMEHeader

	// FULL_DUPLEX_STREAMED holds the header response and the first chunks until the
	// pipeline has the preview it asked for.
	headersHeld bool
	held        [][]byte
	heldBytes   int

	run       *pipeline.Run
	reserved  int64            // bytes of the memory budget this body holds
	chunks    *chunker.Chunker // FULL_DUPLEX_STREAMED output
	collector *replyBuffer     // STREAMED and BUFFERED output

	counts bodyCounts

	// Resolved once: a label lookup per chunk would cost more than the count.
	bytesIn, bytesOut, messagesIn, messagesOut prometheus.Counter
}

func newDirection(st *stream, dir stage.Direction) *direction {
	m := st.srv.metrics
	name := dir.String()
	return &direction{
		st: st, dir: dir,
		bytesIn:     m.bodyBytes.WithLabelValues(name, "in"),
		bytesOut:    m.bodyBytes.WithLabelValues(name, "out"),
		messagesIn:  m.messages.WithLabelValues(name, "in"),
		messagesOut: m.messages.WithLabelValues(name, "out"),
	}
}

// countOut records a body reply to Envoy carrying n bytes.
func (d *direction) countOut(n int) {
	d.counts.out.Add(int64(n))
	d.messagesOut.Inc()
	d.bytesOut.Add(float64(n))
}

func (d *direction) violation(format string, args ...any) error {
	return status.Errorf(codes.FailedPrecondition, d.dir.String()+" "+format, args...)
}

func (d *direction) pipeline() *pipeline.Pipeline {
	name := d.st.route.Request
	if d.dir == stage.Response {
		name = d.st.route.Response
	}
	p, _ := d.st.srv.cfg.Pipeline(name) // config validation guarantees it exists
	return p
}

func (d *direction) onHeaders(h *extprocv3.HttpHeaders) error {
	switch {
	case d.sawHeaders:
		return d.violation("headers arrived twice")
	case d.sawBody || d.ended:
		return d.violation("headers arrived after the body: expected headers first")
	}
	d.sawHeaders = true
	d.header = toMIME(h.GetHeaders())
	if d.dir == stage.Request && d.st.requestID == "" {
		d.st.requestID = d.header.Get("X-Request-Id")
	}
	if h.GetEndOfStream() {
		d.ended = true
		return d.answerHeaders(stage.HeaderEdit{})
	}
	switch d.mode {
	case modeNone, modeBuffered, modePartial:
		// BUFFERED edits travel with the body response, where Envoy still applies them
		// and where the new content-length is known.
		return d.answerHeaders(stage.HeaderEdit{})
	case modeStreamed:
		// Envoy waits for this answer before it sends body: no preview is possible.
		if err := d.start(nil); err != nil {
			return err
		}
		return d.answerHeaders(d.run.Edit())
	case modeFullDuplex:
		if d.previewSize() > 0 {
			d.headersHeld = true // answered once the preview is in
			return nil
		}
		if err := d.start(nil); err != nil {
			return err
		}
		return d.answerHeaders(d.run.Edit())
	}
	return d.violation("body mode %s is not supported", modeName(d.mode))
}

func (d *direction) onBody(b *extprocv3.HttpBody) error {
	switch {
	case d.ended:
		return d.violation("body arrived after end of stream")
	case d.mode == modeNone:
		return d.violation("body arrived but protocol_config says the body mode is NONE")
	case (d.mode == modeBuffered || d.mode == modePartial) && d.sawBody:
		return d.violation("second body message in %s mode: expected one", modeName(d.mode))
	}
	d.sawBody = true
	d.messagesIn.Inc()
	d.bytesIn.Add(float64(len(b.GetBody())))
	d.counts.in.Add(int64(len(b.GetBody())))
	switch d.mode {
	case modeStreamed:
		return d.onStreamedBody(b)
	case modeBuffered, modePartial:
		return d.onBufferedBody(b)
	case modeFullDuplex:
		return d.onFullDuplexBody(b)
	}
	return d.violation("body mode %s is not supported", modeName(d.mode))
}

func (d *direction) onTrailers(*extprocv3.HttpTrailers) error {
	if d.ended {
		return d.violation("trailers arrived after end of stream")
	}
	d.ended = true
	var result stage.Result
	switch d.mode {
	case modeFullDuplex:
		if d.run == nil { // no body, or less than the preview
			if err := d.startFullDuplex(); err != nil {
				return err
			}
		}
		var err error
		if result, err = d.finishFullDuplex(); err != nil {
			return err
		}
	case modeStreamed:
		if d.run != nil {
			identity := d.run.Identity()
			var err error
			if result, err = d.finish(); err != nil {
				return err
			}
			if !identity && len(d.collector.take()) > 0 {
				return stageError{d.dir, errTrailersAfterStreamedTransform}
			}
			if err := d.checkReplies(); err != nil {
				return err
			}
		}
	}
	return d.complete(trailersResponse(d.dir, result))
}

// message describes this direction's HTTP message to the stages.
func (d *direction) message() *stage.Message {
	m := &stage.Message{Direction: d.dir, Header: d.header, RequestID: d.st.requestID}
	if m.Header == nil {
		m.Header = textproto.MIMEHeader{}
	}
	return m
}

// previewSize is how many leading bytes the pipeline wants before it plans.
func (d *direction) previewSize() int { return d.pipeline().PreviewSize(d.message()) }

// start plans and starts the pipeline for this body.
func (d *direction) start(preview []byte) error {
	m := d.message()
	if err := d.reserve(m); err != nil {
		return err
	}
	var out io.Writer
	if d.mode == modeFullDuplex {
		d.chunks = chunker.New(d.st.srv.pool, time.Duration(d.st.srv.cfg.FlushDelay), d.emit)
		out = d.chunks
	} else {
		d.collector = &replyBuffer{}
		out = d.collector
	}
	run, err := d.pipeline().Start(d.st.ctx, m, preview, out)
	if err != nil {
		d.releaseBudget()
		return stageError{d.dir, err}
	}
	d.run = run
	if d.collector != nil {
		// Envoy keeps its own copy in STREAMED and BUFFERED modes: an unchanged body
		// need not travel back, nor be gathered here.
		d.collector.discard.Store(run.Identity())
	}
	return nil
}

// reserve takes this body's share of the memory budget: its stages' state, the
// message buffers between the pipeline and Send, the held preview and, in the
// buffered modes, the gathered output.
func (d *direction) reserve(m *stage.Message) error {
	chunkSize := int64(d.st.srv.cfg.ChunkSize)
	need := d.pipeline().MemoryEstimate(m) + int64(d.pipeline().PreviewSize(m))
	switch d.mode {
	case modeFullDuplex:
		need += 2 * chunkSize // the chunker's buffer and the one being sent
	case modeBuffered, modePartial:
		// The body's length is not known yet; its output may be as large.
		need += int64(d.st.srv.cfg.MaxBufferedBody)
	default:
		need += chunkSize
	}
	reserved, err := d.st.srv.budget.acquire(d.st.ctx, need)
	if err != nil {
		return stageError{d.dir, err}
	}
	d.reserved = reserved
	return nil
}

func (d *direction) releaseBudget() {
	d.st.srv.budget.release(d.reserved)
	d.reserved = 0
}

// finish ends the pipeline's input and waits for its output and observers.
func (d *direction) finish() (stage.Result, error) {
	defer d.releaseBudget()
	result, err := d.run.Close()
	if err != nil {
		return result, stageError{d.dir, err}
	}
	if err := d.checkPipeline(); err != nil {
		return stage.Result{}, err
	}
	if d.dir == stage.Request {
		d.st.requestResult = &result
	}
	return result, nil
}

// abort stops whatever this direction still runs; the stream is ending.
func (d *direction) abort(err error) {
	if err == nil {
		err = errors.New("stream ended before the body did")
	}
	if d.run != nil {
		d.run.Abort(err)
	}
	if d.chunks != nil {
		d.chunks.Close() // emits nothing: the stream's context is done or the body complete
	}
	d.releaseBudget()
}

func (d *direction) write(p []byte) error {
	if _, err := d.run.Write(p); err != nil {
		return stageError{d.dir, err}
	}
	return nil
}

func (d *direction) answerHeaders(edit stage.HeaderEdit) error {
	var extra map[string]string
	if d.dir == stage.Response && d.st.requestResult != nil {
		extra = d.st.requestResult.Headers
	}
	return d.st.enqueue(outgoing{resp: headersResponse(d.dir, headerMutation(edit, extra))})
}

// --- STREAMED: one reply per chunk, in order.

func (d *direction) onStreamedBody(b *extprocv3.HttpBody) error {
	if d.run == nil { // header mode SKIP
		if err := d.start(nil); err != nil {
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
	out := d.collector.take()
	d.countOut(len(out))
	resp := bodyResponse(d.dir, replaceBody(out), nil, result)
	if d.ended {
		if err := d.checkReplies(); err != nil {
			return err
		}
		return d.complete(resp)
	}
	return d.st.enqueue(outgoing{resp: resp})
}

// --- BUFFERED and BUFFERED_PARTIAL: the whole body (or its first part) in one message.

func (d *direction) onBufferedBody(b *extprocv3.HttpBody) error {
	body := b.GetBody()
	preview := body[:min(len(body), d.previewSize())]
	if err := d.start(preview); err != nil {
		return err
	}
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
		return d.complete(bodyResponse(d.dir, nil, headerMutation(stage.HeaderEdit{}, result.Headers), result))
	}
	out := d.collector.take()
	d.countOut(len(out))
	if err := d.checkReplies(); err != nil {
		return err
	}
	edit := d.run.Edit()
	mutation := headerMutation(edit, result.Headers)
	if d.sawHeaders {
		// Envoy keeps content-length in BUFFERED mode with headers SEND and refuses a
		// body whose length differs from it.
		setHeader(mutation, contentLength, itoa(len(out)))
		mutation.RemoveHeaders = removeString(mutation.RemoveHeaders, contentLength)
	}
	return d.complete(bodyResponse(d.dir, replaceBody(out), mutation, result))
}

// --- FULL_DUPLEX_STREAMED: M chunks in, N bounded messages out.

func (d *direction) onFullDuplexBody(b *extprocv3.HttpBody) error {
	if d.run == nil {
		if body := b.GetBody(); len(body) > 0 {
			d.held = append(d.held, body)
			d.heldBytes += len(body)
		}
		if d.heldBytes < d.previewSize() && !b.GetEndOfStream() {
			return nil
		}
		if err := d.startFullDuplex(); err != nil {
			return err
		}
	} else if err := d.write(b.GetBody()); err != nil {
		return err
	}
	if !b.GetEndOfStream() {
		return nil
	}
	d.ended = true
	result, err := d.finishFullDuplex()
	if err != nil {
		return err
	}
	return d.complete(streamedBodyResponse(d.dir, nil, true, result))
}

// startFullDuplex starts the pipeline with the held preview, answers the held
// headers, then feeds the held chunks.
func (d *direction) startFullDuplex() error {
	preview := joinPrefix(d.held, d.previewSize())
	if err := d.start(preview); err != nil {
		return err
	}
	if d.headersHeld {
		d.headersHeld = false
		if err := d.answerHeaders(d.run.Edit()); err != nil {
			return err
		}
	}
	held := d.held
	d.held, d.heldBytes = nil, 0
	for _, chunk := range held {
		if err := d.write(chunk); err != nil {
			return err
		}
	}
	return nil
}

// finishFullDuplex drains the pipeline and flushes every message it produced.
func (d *direction) finishFullDuplex() (stage.Result, error) {
	result, err := d.finish()
	if err != nil {
		return result, err
	}
	if err := d.chunks.Close(); err != nil {
		return result, stageError{d.dir, err}
	}
	if err := d.checkChunker(); err != nil {
		return stage.Result{}, err
	}
	return result, nil
}

// complete marks the body done, every check passed, and sends resp, the message
// that ends it.
func (d *direction) complete(resp *extprocv3.ProcessingResponse) error {
	d.counts.complete.Store(true)
	return d.st.enqueue(outgoing{resp: resp, ends: true, ending: d.dir})
}

// emit sends one chunker message; it blocks while the send queue is full.
func (d *direction) emit(msg []byte) error {
	d.countOut(len(msg))
	return d.st.enqueue(outgoing{resp: streamedBodyResponse(d.dir, msg, false, stage.Result{}), buf: msg})
}

func toMIME(hm *corev3.HeaderMap) textproto.MIMEHeader {
	h := make(textproto.MIMEHeader, len(hm.GetHeaders()))
	for _, hv := range hm.GetHeaders() {
		v := string(hv.GetRawValue())
		if v == "" {
			v = hv.GetValue()
		}
		h.Add(textproto.CanonicalMIMEHeaderKey(hv.GetKey()), v)
	}
	return h
}

func headerValue(hm *corev3.HeaderMap, key string) string {
	for _, hv := range hm.GetHeaders() {
		if hv.GetKey() == key {
			if v := hv.GetRawValue(); len(v) > 0 {
				return string(v)
			}
			return hv.GetValue()
		}
	}
	return ""
}

// joinPrefix returns the first n bytes of chunks as one slice.
func joinPrefix(chunks [][]byte, n int) []byte {
	if n == 0 {
		return nil
	}
	if len(chunks) > 0 && len(chunks[0]) >= n {
		return chunks[0][:n]
	}
	prefix := make([]byte, 0, n)
	for _, c := range chunks {
		prefix = append(prefix, c[:min(len(c), n-len(prefix))]...)
		if len(prefix) == n {
			break
		}
	}
	return prefix
}
