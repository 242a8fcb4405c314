package server

import (
	"errors"
	"io"
	"net/textproto"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	filterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

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

// processor is one body mode's logic for one direction; each mode is one file
// (mode_*.go). The direction checks the order of messages before it calls one.
type processor interface {
	// headers answers headers that do not end the message.
	headers() error
	// body handles one body message.
	body(b *extprocv3.HttpBody) error
	// trailers finishes a body that trailers end and returns what its observers
	// learned; the direction then answers the trailers.
	trailers() (stage.Result, error)
	// memory is what the mode holds per body beyond the pipeline's stages and the
	// preview, for the memory budget.
	memory() int64
	// abort releases what the mode holds: the stream is ending.
	abort()
}

func newProcessor(d *direction) processor {
	switch d.mode {
	case modeNone:
		return noneMode{d}
	case modeStreamed:
		return &streamedMode{d: d}
	case modeBuffered, modePartial:
		return &bufferedMode{d: d}
	case modeFullDuplex:
		return &fullDuplexMode{d: d}
	}
	return unsupportedMode{d}
}

// direction is the state machine of one direction (request or response) of a stream:
// the order of its messages, its pipeline and its share of the memory budget.
type direction struct {
	st   *stream
	dir  stage.Direction
	mode filterv3.ProcessingMode_BodySendMode
	proc processor

	sawHeaders, sawBody, ended bool
	headersOnly                bool // the headers ended the message: no body
	header                     textproto.MIMEHeader
	// bodyHint is the length of a body that arrived before any headers (header mode
	// SKIP), for its reservation; -1 before.
	bodyHint int

	run      *pipeline.Run
	reserved int64 // bytes of the memory budget this body holds

	counts bodyCounts

	// The route's byte counters, resolved once the stream knows its route: a label
	// lookup per chunk would cost more than the count.
	bytesIn, bytesOut prometheus.Counter
}

func newDirection(st *stream, dir stage.Direction) *direction {
	return &direction{st: st, dir: dir, bodyHint: -1}
}

// setMode takes the body mode from the stream's protocol_config.
func (d *direction) setMode(mode filterv3.ProcessingMode_BodySendMode) {
	d.mode = mode
	d.proc = newProcessor(d)
}

// countOut records a body reply to Envoy carrying n bytes.
func (d *direction) countOut(n int) {
	d.counts.out.Add(int64(n))
	d.bytesOut.Add(float64(n))
}

func (d *direction) violation(format string, args ...any) error {
	return status.Errorf(codes.FailedPrecondition, d.dir.String()+" "+format, args...)
}

func (d *direction) pipeline() *pipeline.Pipeline {
	if d.dir == stage.Response {
		return d.st.route.Response
	}
	return d.st.route.Request
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
		d.ended, d.headersOnly = true, true
	}
	if err := d.st.admit(d.dir); err != nil {
		return err
	}
	if d.ended {
		d.releaseBudget() // no body: nothing to hold
		return d.answerHeaders(stage.HeaderEdit{})
	}
	err := d.proc.headers()
	if errors.Is(err, errNoResponseBudget) {
		return d.passThrough().headers()
	}
	return err
}

func (d *direction) onBody(b *extprocv3.HttpBody) error {
	if d.ended {
		return d.violation("body arrived after end of stream")
	}
	d.bytesIn.Add(float64(len(b.GetBody())))
	d.counts.in.Add(int64(len(b.GetBody())))
	if !d.sawHeaders && !d.sawBody {
		d.bodyHint = len(b.GetBody())
	}
	if err := d.st.admit(d.dir); err != nil {
		return err
	}
	err := d.proc.body(b)
	if errors.Is(err, errNoResponseBudget) {
		err = d.passThrough().resume(b)
	}
	d.sawBody = true
	return err
}

func (d *direction) onTrailers(*extprocv3.HttpTrailers) error {
	if d.ended {
		return d.violation("trailers arrived after end of stream")
	}
	d.ended = true
	if err := d.st.admit(d.dir); err != nil {
		return err
	}
	result, err := d.proc.trailers()
	if errors.Is(err, errNoResponseBudget) {
		result, err = d.passThrough().trailers()
	}
	if err != nil {
		return err
	}
	return d.complete(trailersResponse(d.dir, result))
}

// message describes this direction's HTTP message to the stages.
func (d *direction) message() *stage.Message {
	m := &stage.Message{Direction: d.dir, Header: d.header, RequestID: d.st.requestID}
	if m.Header == nil {
		m.Header = textproto.MIMEHeader{}
	}
	if req := d.st.dirs[stage.Request]; d.dir == stage.Response && req.sawHeaders {
		m.RequestHeader = req.header
	}
	return m
}

// previewSize is how many leading bytes the pipeline wants before it plans.
func (d *direction) previewSize() int { return d.pipeline().PreviewSize(d.message()) }

// need is what this direction's body reserves from the memory budget, from what is
// known now: its headers once they arrived (before, an empty message: the most a
// stage estimates), its mode, and nothing once it ended at its headers.
func (d *direction) need() int64 {
	switch {
	case d.headersOnly:
		return 0
	case d.mode != modeStreamed && d.mode != modeBuffered && d.mode != modePartial && d.mode != modeFullDuplex:
		return 0 // no body comes (NONE), or the stream is refused (unsupported)
	}
	m := d.message()
	return d.pipeline().MemoryEstimate(m) + int64(d.pipeline().PreviewSize(m)) + d.proc.memory()
}

// streamsBody reports whether a body may come in pieces (STREAMED or
// FULL_DUPLEX_STREAMED): then the stream's transport buffers hold parts of it.
func (d *direction) streamsBody() bool {
	return !d.headersOnly && (d.mode == modeStreamed || d.mode == modeFullDuplex)
}

// reserve makes this direction's reservation need bytes. It usually holds its share
// of the exchange's admission already and gives back what the headers show it will
// not need. When it needs more, the request waits the admission wait and is refused
// with 503 (nothing of its body went upstream yet); the response is never refused:
// errNoResponseBudget makes it pass through untouched.
func (d *direction) reserve(need int64) error {
	b := d.st.srv.budget
	if b == nil {
		return nil
	}
	need = min(need, b.total)
	switch {
	case need < d.reserved:
		b.release(d.reserved - need)
		d.reserved = need
	case need > d.reserved:
		more, err := b.acquire(d.st.ctx, need-d.reserved)
		if err != nil {
			if d.dir == stage.Response && errors.Is(err, errOverloaded) {
				return errNoResponseBudget
			}
			return stageError{d.dir, err}
		}
		d.reserved += more
	}
	return nil
}

// start reserves this body's memory, then plans and starts the pipeline writing to
// out.
func (d *direction) start(preview []byte, out io.Writer) error {
	if err := d.reserve(d.need()); err != nil {
		return err
	}
	run, err := d.pipeline().Start(d.st.ctx, d.message(), preview, out)
	if err != nil {
		d.releaseBudget()
		return stageError{d.dir, err}
	}
	d.run = run
	return nil
}

// takeReservation moves up to n bytes of this direction's reservation to the caller,
// who releases them (with an outgoing message that holds the memory they stand for).
func (d *direction) takeReservation(n int64) int64 {
	n = min(n, d.reserved)
	d.reserved -= n
	return n
}

func (d *direction) releaseBudget() {
	d.st.srv.budget.release(d.reserved)
	d.reserved = 0
}

// finish ends the pipeline's input, waits for its output and observers, and checks
// its accounting.
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
	if d.proc != nil {
		d.proc.abort()
	}
	d.releaseBudget()
}

func (d *direction) write(p []byte) error {
	if _, err := d.run.Write(p); err != nil {
		return stageError{d.dir, err}
	}
	return nil
}

// ownHeaders are the result headers that belong on this direction's own message. A
// request body's results (x-bodystream-request-sha256) are for the client, on the
// response's headers (answerHeaders), never for the upstream.
func (d *direction) ownHeaders(result stage.Result) map[string]string {
	if d.dir == stage.Request {
		return nil
	}
	return result.Headers
}

func (d *direction) answerHeaders(edit stage.HeaderEdit) error {
	var extra map[string]string
	if d.dir == stage.Response && d.st.requestResult != nil {
		extra = d.st.requestResult.Headers
	}
	mutation := withRouteEdits(headerMutation(edit, extra), d.st.route.HeaderEdits(d.dir))
	return d.st.enqueue(outgoing{resp: headersResponse(d.dir, mutation)})
}

// complete marks the body done, every check passed, and sends resp, the message
// that ends it.
func (d *direction) complete(resp *extprocv3.ProcessingResponse) error {
	return d.completeHolding(resp, 0)
}

// completeHolding is complete for a message that holds reserved bytes of the budget
// (a BUFFERED reply): the send loop releases them once Send has serialised it.
func (d *direction) completeHolding(resp *extprocv3.ProcessingResponse, reserved int64) error {
	d.counts.complete.Store(true)
	return d.st.enqueue(outgoing{resp: resp, ends: true, ending: d.dir, reserved: reserved})
}

// noneMode: the body does not come to bodystream (NONE).
type noneMode struct{ d *direction }

func (m noneMode) headers() error { return m.d.answerHeaders(stage.HeaderEdit{}) }
func (m noneMode) body(*extprocv3.HttpBody) error {
	return m.d.violation("body arrived but protocol_config says the body mode is NONE")
}
func (m noneMode) trailers() (stage.Result, error) { return stage.Result{}, nil }
func (m noneMode) memory() int64                   { return 0 }
func (m noneMode) abort()                          {}

// unsupportedMode is a body mode this version of Envoy's protocol has that
// bodystream does not implement.
type unsupportedMode struct{ d *direction }

func (m unsupportedMode) refuse() error {
	return m.d.violation("body mode %s is not supported", modeName(m.d.mode))
}
func (m unsupportedMode) headers() error                  { return m.refuse() }
func (m unsupportedMode) body(*extprocv3.HttpBody) error  { return m.refuse() }
func (m unsupportedMode) trailers() (stage.Result, error) { return stage.Result{}, nil }
func (m unsupportedMode) memory() int64                   { return 0 }
func (m unsupportedMode) abort()                          {}

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

// checkOrder refuses a message that Envoy would never send given the other
// direction's state; each direction checks its own order. Envoy's ext_proc filter
// sees the request headers before anything of the response: the response comes from
// an upstream the request was forwarded to, or from a local reply of Envoy's that
// passes the filter after it saw the request. Nothing else orders the directions:
//   - the request's body and trailers may keep arriving while the response streams
//     and after it ended (an upstream may answer before it has read the whole request);
//   - Envoy's own local replies reach the filter's response path at any time, also
//     before the request headers or a BUFFERED request body were answered (Envoy 1.40
//     sends the response headers of its 413 for a BUFFERED body over its buffer limit
//     before that body was ever sent: TestE2ERoutes/buffered/64_MiB);
//   - with request header mode SKIP the response may come first.
func (st *stream) checkOrder(req *extprocv3.ProcessingRequest) error {
	if _, ok := req.Request.(*extprocv3.ProcessingRequest_RequestHeaders); !ok {
		return nil
	}
	if seen := st.dirs[stage.Response].seen(); seen != "" {
		return status.Errorf(codes.FailedPrecondition,
			"request headers arrived after the response %s: expected request headers first, before anything of the response", seen)
	}
	return nil
}

// seen names the first kind of message this direction received, "" for none.
func (d *direction) seen() string {
	switch {
	case d.sawHeaders:
		return "headers"
	case d.sawBody:
		return "body"
	case d.ended:
		return "trailers"
	}
	return ""
}

// passMode passes a response through untouched: its transform's share of the budget
// could not be had, and the upstream may already have carried out the request, so a
// 503 (an invitation to retry) is no longer an answer. Envoy forwards its own copy in
// STREAMED and BUFFERED modes; in FULL_DUPLEX_STREAMED each received chunk goes back
// as it is, in messages of at most chunk_size, copied into pooled buffers: the
// received body is a view into a receive buffer that is reused once it is handled.
type passMode struct {
	d *direction
	// What the FULL_DUPLEX_STREAMED mode it replaced held back for its preview.
	headersHeld bool
	held        []byte
}

// passThrough replaces this direction's mode with passMode, counting and logging it.
func (d *direction) passThrough() *passMode {
	p := &passMode{d: d}
	if fd, ok := d.proc.(*fullDuplexMode); ok {
		p.headersHeld, p.held = fd.headersHeld, fd.held
		fd.held = nil
	}
	d.proc.abort()
	d.proc = p
	d.passedUntouched()
	return p
}

// passedUntouched releases this direction's reservation and counts and logs that its
// body passes through untouched for lack of budget.
func (d *direction) passedUntouched() {
	d.releaseBudget()
	d.st.srv.metrics.passedUntouched.WithLabelValues(d.dir.String()).Inc()
	d.st.srv.log.Warn("memory budget spent after the upstream had the request: body passed through untouched",
		"request_id", d.st.requestID, "direction", d.dir, "mode", modeName(d.mode))
}

func (p *passMode) headers() error { return p.d.answerHeaders(stage.HeaderEdit{}) }

// resume handles b, the body message during which the mode was replaced: the
// FULL_DUPLEX_STREAMED mode had already added it to what it held.
func (p *passMode) resume(b *extprocv3.HttpBody) error {
	if p.d.mode != modeFullDuplex {
		return p.body(b)
	}
	if err := p.flushHeld(); err != nil {
		return err
	}
	if b.GetEndOfStream() {
		return p.end()
	}
	return nil
}

func (p *passMode) body(b *extprocv3.HttpBody) error {
	d := p.d
	switch d.mode {
	case modeFullDuplex:
		if err := p.forward(b.GetBody()); err != nil {
			return err
		}
		if b.GetEndOfStream() {
			return p.end()
		}
		return nil
	case modeStreamed:
		resp := bodyResponse(d.dir, nil, nil, stage.Result{})
		if b.GetEndOfStream() {
			d.ended = true
			return d.complete(resp)
		}
		return d.st.enqueue(outgoing{resp: resp})
	default: // BUFFERED, BUFFERED_PARTIAL: one message, Envoy keeps the body
		if d.sawBody {
			return d.violation("second body message in %s mode: expected one", modeName(d.mode))
		}
		d.ended = b.GetEndOfStream() || d.mode == modePartial
		return d.complete(bodyResponse(d.dir, nil, nil, stage.Result{}))
	}
}

func (p *passMode) trailers() (stage.Result, error) { return stage.Result{}, p.flushHeld() }

// flushHeld answers held headers and forwards held chunks.
func (p *passMode) flushHeld() error {
	if p.headersHeld {
		p.headersHeld = false
		if err := p.headers(); err != nil {
			return err
		}
	}
	held := p.held
	p.held = nil
	return p.forward(held)
}

// forward sends body back in messages of at most chunk_size, each a pooled copy: the
// send loop may send it after body's receive buffer went back to the pool.
func (p *passMode) forward(body []byte) error {
	d := p.d
	for len(body) > 0 {
		buf := d.st.srv.pool.Get()
		n := copy(buf[:cap(buf)], body)
		d.countOut(n)
		if err := d.st.enqueue(outgoing{resp: streamedBodyResponse(d.dir, buf[:n], false, stage.Result{}), buf: buf}); err != nil {
			return err
		}
		body = body[n:]
	}
	return nil
}

func (p *passMode) end() error {
	p.d.ended = true
	return p.d.complete(streamedBodyResponse(p.d.dir, nil, true, stage.Result{}))
}

func (p *passMode) memory() int64 { return 0 }
func (p *passMode) abort()        {}
