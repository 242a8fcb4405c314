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
	header                     textproto.MIMEHeader

	run      *pipeline.Run
	reserved int64 // bytes of the memory budget this body holds

	counts bodyCounts

	// The route's byte counters, resolved once the stream knows its route: a label
	// lookup per chunk would cost more than the count.
	bytesIn, bytesOut prometheus.Counter
}

func newDirection(st *stream, dir stage.Direction) *direction {
	return &direction{st: st, dir: dir}
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
		d.ended = true
		return d.answerHeaders(stage.HeaderEdit{})
	}
	return d.proc.headers()
}

func (d *direction) onBody(b *extprocv3.HttpBody) error {
	if d.ended {
		return d.violation("body arrived after end of stream")
	}
	d.bytesIn.Add(float64(len(b.GetBody())))
	d.counts.in.Add(int64(len(b.GetBody())))
	err := d.proc.body(b)
	d.sawBody = true
	return err
}

func (d *direction) onTrailers(*extprocv3.HttpTrailers) error {
	if d.ended {
		return d.violation("trailers arrived after end of stream")
	}
	d.ended = true
	result, err := d.proc.trailers()
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

// start reserves this body's memory, then plans and starts the pipeline writing to
// out.
func (d *direction) start(preview []byte, out io.Writer) error {
	m := d.message()
	need := d.pipeline().MemoryEstimate(m) + int64(d.pipeline().PreviewSize(m)) + d.proc.memory()
	reserved, err := d.st.srv.budget.acquire(d.st.ctx, need)
	if err != nil {
		return stageError{d.dir, err}
	}
	d.reserved = reserved
	run, err := d.pipeline().Start(d.st.ctx, m, preview, out)
	if err != nil {
		d.releaseBudget()
		return stageError{d.dir, err}
	}
	d.run = run
	return nil
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

func (d *direction) answerHeaders(edit stage.HeaderEdit) error {
	var extra map[string]string
	if d.dir == stage.Response && d.st.requestResult != nil {
		extra = d.st.requestResult.Headers
	}
	return d.st.enqueue(outgoing{resp: headersResponse(d.dir, headerMutation(edit, extra))})
}

// complete marks the body done, every check passed, and sends resp, the message
// that ends it.
func (d *direction) complete(resp *extprocv3.ProcessingResponse) error {
	d.counts.complete.Store(true)
	return d.st.enqueue(outgoing{resp: resp, ends: true, ending: d.dir})
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
