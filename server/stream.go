package server

import (
	"context"
	"fmt"
	"sync"
	"time"

	filterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/bodystream/bodystream/pipeline"
	"github.com/bodystream/bodystream/stage"
)

// outgoing is one message for the send loop.
type outgoing struct {
	resp *extprocv3.ProcessingResponse
	// buf is the pooled body the message points into; the send loop returns it to the
	// pool once Send has serialised the message.
	buf []byte
	// final marks an ImmediateResponse: nothing may follow it. rejection says why.
	final     bool
	rejection *rejectionOutcome
	// ends marks the message that ends a body (end_of_stream, the reply to the last
	// chunk, or trailers): ending is that body's direction.
	ends   bool
	ending stage.Direction
	// reserved is budget the message's memory stands for (a BUFFERED reply); the send
	// loop releases it once Send has serialised the message.
	reserved int64
}

// sendQueueSlots is the send queue's length. One slot: Send works on one message
// while the pipeline fills the next, and a slow Envoy stops the pipeline with at most
// three messages in hand.
const sendQueueSlots = 1

// stream is the state of one ext_proc stream, i.e. one HTTP request and its response.
type stream struct {
	ctx    context.Context
	srv    *Server
	grpc   extprocv3.ExternalProcessor_ProcessServer
	queue  chan outgoing
	closed sync.Once

	started bool // the first message (with protocol_config) has arrived
	// admitted: the exchange's one admission is done (see admit).
	admitted bool
	// transport is the budget admit reserved for the stream's own buffers
	// (transportHolds); Process releases it when the stream has ended.
	transport int64
	route     pipeline.Pair
	dirs      [2]*direction
	// requestID names files and log lines; it comes from the request headers.
	requestID string
	// requestResult is what the request body's observers learned, for the response headers.
	requestResult *stage.Result
	// failed is set once an ImmediateResponse went out: every later message is ignored.
	failed bool
	// rejected is what the ImmediateResponse that went out answered, for the
	// stream's end line; the send loop sets it.
	rejected *rejectionOutcome

	// firstIn is when each direction's first message arrived; the send loop reads it
	// for a message of that direction, which was queued after it was set.
	firstIn [2]time.Time
	// outputSeen is the send loop's: whether a direction's first body reply went out.
	outputSeen [2]bool
}

func newStream(ctx context.Context, srv *Server, g extprocv3.ExternalProcessor_ProcessServer) *stream {
	st := &stream{
		ctx:   ctx,
		srv:   srv,
		grpc:  g,
		queue: make(chan outgoing, sendQueueSlots),
	}
	st.dirs[stage.Request] = newDirection(st, stage.Request)
	st.dirs[stage.Response] = newDirection(st, stage.Response)
	return st
}

// enqueue hands a message to the send loop, or gives up when the stream ends.
func (st *stream) enqueue(m outgoing) error {
	if err := st.ctx.Err(); err != nil {
		st.release(m)
		return context.Cause(st.ctx)
	}
	select {
	case st.queue <- m:
		return nil
	case <-st.ctx.Done():
		st.release(m)
		return context.Cause(st.ctx)
	}
}

func (st *stream) release(m outgoing) {
	if m.buf != nil {
		st.srv.pool.Put(m.buf)
	}
	st.srv.budget.release(m.reserved)
}

// admit is the HTTP exchange's one admission, at its first request message: it
// reserves what the request body and the response body will hold, and what the stream
// holds while any body moves (transportHolds), in one acquire, before anything of the
// request is answered. That is the only place a stream waits for the budget and may be
// refused with 503: nothing of the request has gone upstream yet, so the client may
// retry. A stream whose first message belongs to the response (request header mode
// SKIP, no request body) reserves its transport only if the budget has it free now,
// without waiting: its response reserves what it can and otherwise passes through
// untouched.
func (st *stream) admit(dir stage.Direction) error {
	if st.admitted {
		return nil
	}
	st.admitted = true
	transport := st.srv.transportHolds()
	if dir == stage.Response {
		if st.dirs[stage.Response].streamsBody() && st.srv.budget.tryAcquire(transport) {
			st.transport = transport
		}
		return nil
	}
	req, resp := st.dirs[stage.Request], st.dirs[stage.Response]
	reqNeed, respNeed := req.need(), resp.need()
	if !req.streamsBody() && !resp.streamsBody() {
		transport = 0 // no body streams: BUFFERED replies count their own copies
	}
	got, err := st.srv.budget.acquire(st.ctx, reqNeed+respNeed+transport)
	if err != nil {
		return stageError{stage.Request, err}
	}
	st.transport = min(transport, got)
	got -= st.transport
	req.reserved = min(reqNeed, got)
	resp.reserved = got - req.reserved
	return nil
}

func (st *stream) closeQueue() { st.closed.Do(func() { close(st.queue) }) }

// sendLoop is the only caller of Send.
func (st *stream) sendLoop(cancel context.CancelCauseFunc) error {
	for m := range st.queue {
		if st.ctx.Err() != nil {
			st.release(m)
			continue // drain so that no pooled buffer is lost
		}
		if m.ends {
			if err := st.checkEnding(m.ending); err != nil {
				st.release(m)
				cancel(err)
				return err
			}
		}
		err := st.grpc.Send(m.resp)
		if err == nil {
			st.sent(m)
		}
		st.release(m)
		if err != nil {
			err = fmt.Errorf("send: %w", err)
			cancel(err)
			return err
		}
		if m.final {
			cancel(errStreamDone)
			return errStreamDone
		}
	}
	return nil
}

// recvLoop receives until the stream ends, running each message through its
// direction's state machine. It returns nil when Envoy ended the stream normally.
// Before it returns, every pipeline of the stream has stopped.
func (st *stream) recvLoop() (err error) {
	defer func() {
		for _, d := range st.dirs {
			d.abort(err)
		}
	}()
	for {
		// A new value each time: handle may keep the request's messages (not its body).
		msg := new(received)
		if err := st.grpc.RecvMsg(msg); err != nil {
			if endedByEnvoy(err) {
				return nil
			}
			return fmt.Errorf("receive: %w", err)
		}
		st.received(&msg.req)
		if st.failed {
			msg.free()
			// An ImmediateResponse is out; Envoy is closing the stream.
			st.srv.metrics.spurious.WithLabelValues(spuriousAfterImmediate).Inc()
			continue
		}
		err := st.handle(&msg.req)
		// The body is a view into the receive buffer (recv.go): nothing handle
		// started reads it any more.
		msg.free()
		if err != nil {
			if isViolation(err) {
				st.srv.metrics.spurious.WithLabelValues(spuriousProtocolViolation).Inc()
			}
			return err
		}
	}
}

func (st *stream) handle(req *extprocv3.ProcessingRequest) error {
	if req.GetObservabilityMode() {
		return status.Error(codes.FailedPrecondition, "observability_mode is not supported: bodystream transforms bodies and must answer")
	}
	if !st.started {
		st.start(req)
	}
	if err := st.checkOrder(req); err != nil {
		return err
	}
	var err error
	switch r := req.Request.(type) {
	case *extprocv3.ProcessingRequest_RequestHeaders:
		err = st.dirs[stage.Request].onHeaders(r.RequestHeaders)
	case *extprocv3.ProcessingRequest_ResponseHeaders:
		err = st.dirs[stage.Response].onHeaders(r.ResponseHeaders)
	case *extprocv3.ProcessingRequest_RequestBody:
		err = st.dirs[stage.Request].onBody(r.RequestBody)
	case *extprocv3.ProcessingRequest_ResponseBody:
		err = st.dirs[stage.Response].onBody(r.ResponseBody)
	case *extprocv3.ProcessingRequest_RequestTrailers:
		err = st.dirs[stage.Request].onTrailers(r.RequestTrailers)
	case *extprocv3.ProcessingRequest_ResponseTrailers:
		err = st.dirs[stage.Response].onTrailers(r.ResponseTrailers)
	case nil:
		return status.Error(codes.InvalidArgument, "ProcessingRequest carries no message: expected request/response headers, body or trailers")
	default:
		return status.Errorf(codes.InvalidArgument, "unsupported ProcessingRequest message %T", r)
	}
	if err == nil {
		return nil
	}
	return st.fail(err)
}

// start reads what the first message tells: the body modes and the route.
func (st *stream) start(req *extprocv3.ProcessingRequest) {
	st.started = true
	pc := req.GetProtocolConfig()
	st.dirs[stage.Request].setMode(pc.GetRequestBodyMode())
	st.dirs[stage.Response].setMode(pc.GetResponseBodyMode())

	md, _ := metadata.FromIncomingContext(st.ctx)
	var routeName, routeAttr, path string
	if v := md.Get(routeMetadataKey); len(v) > 0 {
		routeName = v[0]
	}
	if attrs := req.GetAttributes()[attributesKey]; attrs != nil {
		routeAttr = attrs.GetFields()["xds.route_name"].GetStringValue()
		path = attrs.GetFields()["request.path"].GetStringValue()
	}
	if h := req.GetRequestHeaders(); h != nil {
		if path == "" {
			path = headerValue(h.GetHeaders(), ":path")
		}
		st.requestID = headerValue(h.GetHeaders(), "x-request-id")
	}
	var unknown bool
	st.route, unknown = st.srv.router.Choose(routeName, routeAttr, path)
	if unknown {
		st.srv.unknownRoute(routeName)
	}
	for _, d := range st.dirs {
		d.bytesIn, d.bytesOut = st.srv.metrics.routeBytes(st.route, d.dir)
	}
}

// modeName is for messages: "FULL_DUPLEX_STREAMED".
func modeName(m filterv3.ProcessingMode_BodySendMode) string { return m.String() }
