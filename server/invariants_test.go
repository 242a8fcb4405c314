package server

import (
	"context"
	"errors"
	"testing"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/bodystream/bodystream/stage"
)

// recordingStream is the server side of a stream whose Send records.
type recordingStream struct {
	extprocv3.ExternalProcessor_ProcessServer
	ctx  context.Context
	sent []*extprocv3.ProcessingResponse
}

func (r *recordingStream) Context() context.Context { return r.ctx }
func (r *recordingStream) Send(m *extprocv3.ProcessingResponse) error {
	r.sent = append(r.sent, m)
	return nil
}

// TestEndingNeedsCompleteBody: the send loop refuses a message that would end a body
// that did not complete, counts the violation and ends the stream with it.
func TestEndingNeedsCompleteBody(t *testing.T) {
	for _, complete := range []bool{false, true} {
		name := map[bool]string{false: "incomplete body", true: "complete body"}[complete]
		t.Run(name, func(t *testing.T) {
			srv, _ := newServer(t, testConfig)
			ctx, cancel := context.WithCancelCause(t.Context())
			defer cancel(nil)
			grpcStream := &recordingStream{ctx: ctx}
			st := newStream(ctx, srv, grpcStream)
			st.dirs[stage.Response].counts.complete.Store(complete)

			st.queue <- outgoing{resp: streamedBodyResponse(stage.Response, nil, true, stage.Result{}), ends: true, ending: stage.Response}
			st.closeQueue()
			err := st.sendLoop(cancel)

			violations := testutil.ToFloat64(srv.metrics.invariantViolations.WithLabelValues(invariantEndOfStream))
			if complete {
				if err != nil || len(grpcStream.sent) != 1 || violations != 0 || !st.dirs[stage.Response].counts.ended.Load() {
					t.Errorf("complete body: err %v, %d sent, %v violations; want the message sent", err, len(grpcStream.sent), violations)
				}
				return
			}
			if !errors.Is(err, errInvariant) || len(grpcStream.sent) != 0 || violations != 1 || !errors.Is(context.Cause(ctx), errInvariant) {
				t.Errorf("incomplete body: err %v, %d sent, %v violations, stream cause %v; want nothing sent, one violation, the stream ended with it",
					err, len(grpcStream.sent), violations, context.Cause(ctx))
			}
		})
	}
}
