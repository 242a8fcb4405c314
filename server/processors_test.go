package server

import (
	"bytes"
	"context"
	"sync"
	"testing"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc/metadata"

	"github.com/bodystream/bodystream/stage"
)

// TestProcessorsWithoutGRPC drives each body mode's processor through the stream's
// state machine with no gRPC at all: messages go in through handle, answers come out
// of the send queue. Every mode must give back the gzip of the body, split as the
// mode requires, and mark exactly its last message as the one that ends the body.
func TestProcessorsWithoutGRPC(t *testing.T) {
	body := text(50_000)
	tests := []struct {
		mode       modes
		replies    int // body answers expected; -1: one per chunk
		wantLength bool
	}{
		{modes{modeStreamed, modeNone}, -1, false},
		{modes{modeBuffered, modeNone}, 1, true},
		{modes{modeFullDuplex, modeNone}, 0, false},
	}
	for _, tt := range tests {
		t.Run(modeName(tt.mode.request), func(t *testing.T) {
			srv, _ := newServer(t, testConfig)
			ctx, cancel := context.WithCancelCause(metadata.NewIncomingContext(t.Context(), metadata.Pairs(routeMetadataKey, "gzip")))
			defer cancel(nil)
			st := newStream(ctx, srv, nil)

			var out []outgoing
			var drained sync.WaitGroup
			drained.Go(func() {
				for m := range st.queue {
					out = append(out, m)
				}
			})
			first := requestHeaders(false, ":path", "/", "content-type", "text/plain")
			first.ProtocolConfig = &extprocv3.ProtocolConfiguration{RequestBodyMode: tt.mode.request, ResponseBodyMode: tt.mode.response}
			msgs := []*extprocv3.ProcessingRequest{first}
			chunks := [][]byte{body}
			if tt.mode.request != modeBuffered {
				chunks = split(body, 7000)
			}
			for i, c := range chunks {
				msgs = append(msgs, requestBody(c, i == len(chunks)-1))
			}
			for _, m := range msgs {
				if err := st.handle(m); err != nil {
					t.Fatalf("handle: %v", err)
				}
			}
			st.closeQueue()
			drained.Wait()

			var got []byte
			var bodyAnswers, ends int
			for i, m := range out {
				if m.ends {
					ends++
					if i != len(out)-1 || m.ending != stage.Request {
						t.Errorf("message %d of %d ends the %s body; want only the last, for the request", i, len(out), m.ending)
					}
				}
				rb := m.resp.GetRequestBody()
				if rb == nil {
					continue
				}
				bodyAnswers++
				mut := rb.GetResponse().GetBodyMutation()
				got = append(got, mut.GetBody()...)
				got = append(got, mut.GetStreamedResponse().GetBody()...)
				if tt.wantLength {
					if v, ok := setValue(rb.GetResponse().GetHeaderMutation(), contentLength); !ok || v != itoa(len(mut.GetBody())) {
						t.Errorf("content-length %q, want %d", v, len(mut.GetBody()))
					}
				}
				st.release(m)
			}
			switch want := tt.replies; {
			case want == -1 && bodyAnswers != len(chunks):
				t.Errorf("%d body answers to %d chunks, want one each", bodyAnswers, len(chunks))
			case want > 0 && bodyAnswers != want:
				t.Errorf("%d body answers, want %d", bodyAnswers, want)
			}
			if ends != 1 || !st.dirs[stage.Request].counts.complete.Load() {
				t.Errorf("%d messages end the body, complete %v; want one, true", ends, st.dirs[stage.Request].counts.complete.Load())
			}
			if plain := gunzip(t, got); !bytes.Equal(plain, body) {
				t.Errorf("answers decode to %d bytes, want the %d sent", len(plain), len(body))
			}
			if n := st.dirs[stage.Request].counts.in.Load(); n != int64(len(body)) {
				t.Errorf("counted %d bytes in, want %d", n, len(body))
			}
		})
	}
}
