package server

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/bodystream/bodystream/stage"
)

// receivedKind names a message from Envoy, its direction and body bytes.
func receivedKind(req *extprocv3.ProcessingRequest) (messageKind, stage.Direction, *extprocv3.HttpBody) {
	switch r := req.Request.(type) {
	case *extprocv3.ProcessingRequest_RequestHeaders:
		return msgRequestHeaders, stage.Request, nil
	case *extprocv3.ProcessingRequest_RequestBody:
		return msgRequestBody, stage.Request, r.RequestBody
	case *extprocv3.ProcessingRequest_RequestTrailers:
		return msgRequestTrailers, stage.Request, nil
	case *extprocv3.ProcessingRequest_ResponseHeaders:
		return msgResponseHeaders, stage.Response, nil
	case *extprocv3.ProcessingRequest_ResponseBody:
		return msgResponseBody, stage.Response, r.ResponseBody
	case *extprocv3.ProcessingRequest_ResponseTrailers:
		return msgResponseTrailers, stage.Response, nil
	}
	return msgOther, stage.Request, nil
}

// sentKind names a message to Envoy, its direction and the body it carries.
func sentKind(resp *extprocv3.ProcessingResponse) (messageKind, stage.Direction, *extprocv3.BodyMutation) {
	switch r := resp.Response.(type) {
	case *extprocv3.ProcessingResponse_RequestHeaders:
		return msgRequestHeaders, stage.Request, nil
	case *extprocv3.ProcessingResponse_RequestBody:
		return msgRequestBody, stage.Request, r.RequestBody.GetResponse().GetBodyMutation()
	case *extprocv3.ProcessingResponse_RequestTrailers:
		return msgRequestTrailers, stage.Request, nil
	case *extprocv3.ProcessingResponse_ResponseHeaders:
		return msgResponseHeaders, stage.Response, nil
	case *extprocv3.ProcessingResponse_ResponseBody:
		return msgResponseBody, stage.Response, r.ResponseBody.GetResponse().GetBodyMutation()
	case *extprocv3.ProcessingResponse_ResponseTrailers:
		return msgResponseTrailers, stage.Response, nil
	case *extprocv3.ProcessingResponse_ImmediateResponse:
		return msgImmediateResponse, stage.Request, nil
	}
	return msgOther, stage.Request, nil
}

// received counts a message from Envoy, notes when its direction began and, at debug
// level, logs it. With debug off it costs a type switch and a counter.
func (st *stream) received(req *extprocv3.ProcessingRequest) {
	kind, dir, body := receivedKind(req)
	st.srv.metrics.received[kind].Inc()
	if kind != msgOther && st.firstIn[dir].IsZero() {
		st.firstIn[dir] = time.Now()
	}
	if !st.srv.log.Enabled(st.ctx, slog.LevelDebug) {
		return
	}
	st.srv.log.LogAttrs(st.ctx, slog.LevelDebug, "ext_proc message received", slog.String("request_id", st.requestID),
		slog.String("message", kind.String()), slog.Int("body_bytes", len(body.GetBody())),
		slog.Bool("end_of_stream", body.GetEndOfStream()))
}

// sent counts a message that went to Envoy, times its direction's first body reply
// and, at debug level, logs it. It runs in the send loop.
func (st *stream) sent(m outgoing) {
	kind, dir, body := sentKind(m.resp)
	if c := st.srv.metrics.sent[kind]; c != nil {
		c.Inc()
	}
	if r := m.rejection; r != nil {
		st.rejected = r
		st.srv.metrics.immediateResponses.WithLabelValues(strconv.Itoa(r.status), r.reason).Inc()
	}
	if (kind == msgRequestBody || kind == msgResponseBody) && !st.outputSeen[dir] {
		st.outputSeen[dir] = true
		if began := st.firstIn[dir]; !began.IsZero() {
			st.srv.metrics.firstOutput.WithLabelValues(dir.String()).Observe(time.Since(began).Seconds())
		}
	}
	if !st.srv.log.Enabled(st.ctx, slog.LevelDebug) {
		return
	}
	n, eos := len(body.GetBody()), false
	if sr := body.GetStreamedResponse(); sr != nil {
		n, eos = len(sr.GetBody()), sr.GetEndOfStream()
	}
	st.srv.log.LogAttrs(st.ctx, slog.LevelDebug, "ext_proc message sent", slog.String("request_id", st.requestID),
		slog.String("message", kind.String()), slog.Int("body_bytes", n), slog.Bool("end_of_stream", eos),
		slog.Bool("clear_body", body.GetClearBody()))
}

// isViolation reports an error that a message from Envoy caused by breaking the
// protocol (the statuses direction.violation and handle return).
func isViolation(err error) bool {
	c := status.Code(err)
	return c == codes.FailedPrecondition || c == codes.InvalidArgument
}

// interrupted reports a body that started but whose end never went back to Envoy: the
// stream ended (Envoy reset it, usually because the client went away) mid-body.
func (d *direction) interrupted() bool {
	if d.mode == modeNone || !(d.sawHeaders || d.sawBody) || d.counts.ended.Load() {
		return false
	}
	headersOnly := d.ended && !d.sawBody
	return !headersOnly
}

// result classifies how a stream ended and returns what Process returns.
func (st *stream) result(recvErr, sendErr error) (string, error) {
	switch {
	case errors.Is(sendErr, errStreamDone):
		return resultRejected, nil
	case recvErr == nil || endedByEnvoy(recvErr):
		if st.dirs[stage.Request].interrupted() || st.dirs[stage.Response].interrupted() {
			return resultCancelled, nil
		}
		return resultOK, nil
	case status.Code(recvErr) != codes.Unknown:
		return resultProtocolError, recvErr
	default:
		return resultFailed, status.Error(codes.Internal, recvErr.Error())
	}
}

// end counts the stream's result and writes its one line: at info, or at warn when
// the stream failed. The stress run's forensics read the line's request and response
// groups (bench/stress_logs.go).
func (st *stream) end(result string, began time.Time, recvErr, sendErr error) {
	m := st.srv.metrics
	elapsed := time.Since(began)
	m.streams.WithLabelValues(result).Inc()
	m.streamDuration.WithLabelValues(result).Observe(elapsed.Seconds())
	if result == resultProtocolError || result == resultFailed {
		m.streamsFailed.Inc()
	} else {
		m.streamsClosed.Inc()
	}

	level := slog.LevelInfo
	if result == resultProtocolError || result == resultFailed {
		level = slog.LevelWarn
	}
	ctx := context.Background() // the stream's context is done
	if !st.srv.log.Enabled(ctx, level) {
		return
	}
	attrs := make([]slog.Attr, 0, 10)
	attrs = append(attrs, slog.String("request_id", st.requestID), slog.String("route", st.route.Route),
		slog.String("outcome", result))
	switch {
	case st.rejected != nil:
		attrs = append(attrs, slog.Int("status", st.rejected.status), slog.String("reason", st.rejected.reason),
			slog.String("err", st.rejected.err.Error()))
	case recvErr != nil:
		attrs = append(attrs, slog.String("err", recvErr.Error()))
	case sendErr != nil:
		attrs = append(attrs, slog.String("err", sendErr.Error()))
	}
	attrs = append(attrs, slog.Duration("duration", elapsed),
		slog.Any("request", st.dirs[stage.Request].summary()),
		slog.Any("response", st.dirs[stage.Response].summary()))
	st.srv.log.LogAttrs(ctx, level, "ext_proc stream ended", attrs...)
}
