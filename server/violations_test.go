package server

import (
	"io"
	"strings"
	"testing"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestProtocolViolations: a message Envoy would never send in that order ends the
// stream with a gRPC status that says what was expected and what arrived, is counted
// as spurious, and leaves no goroutine behind (goleak in TestMain).
func TestProtocolViolations(t *testing.T) {
	ts := newTestServer(t, testConfig)
	streamed := modes{modeStreamed, modeStreamed}
	buffered := modes{modeBuffered, modeBuffered}
	none := modes{modeNone, modeNone}
	cases := []struct {
		name  string
		mode  modes
		route string
		// script is sent in order; answers are read and ignored until the stream ends.
		script   []*extprocv3.ProcessingRequest
		code     codes.Code
		contains string
	}{
		{"empty oneof", fullDuplex, "identity",
			[]*extprocv3.ProcessingRequest{{}},
			codes.InvalidArgument, "carries no message"},
		{"headers twice", fullDuplex, "identity",
			[]*extprocv3.ProcessingRequest{requestHeaders(false, ":path", "/"), requestHeaders(false, ":path", "/")},
			codes.FailedPrecondition, "request headers arrived twice"},
		{"headers after body", fullDuplex, "identity",
			[]*extprocv3.ProcessingRequest{requestBody([]byte("a"), false), requestHeaders(false, ":path", "/")},
			codes.FailedPrecondition, "request headers arrived after the body"},
		{"body after end of stream (full duplex)", fullDuplex, "gzip",
			[]*extprocv3.ProcessingRequest{requestHeaders(false, ":path", "/"), requestBody([]byte("a"), true), requestBody([]byte("b"), false)},
			codes.FailedPrecondition, "request body arrived after end of stream"},
		{"body after end of stream (streamed)", streamed, "identity",
			[]*extprocv3.ProcessingRequest{requestHeaders(false, ":path", "/"), requestBody([]byte("a"), true), requestBody([]byte("b"), true)},
			codes.FailedPrecondition, "request body arrived after end of stream"},
		{"body after header end of stream", streamed, "identity",
			[]*extprocv3.ProcessingRequest{requestHeaders(true, ":path", "/"), requestBody([]byte("a"), true)},
			codes.FailedPrecondition, "request body arrived after end of stream"},
		{"body in mode NONE", none, "identity",
			[]*extprocv3.ProcessingRequest{requestHeaders(false, ":path", "/"), requestBody([]byte("a"), true)},
			codes.FailedPrecondition, "body mode is NONE"},
		{"second BUFFERED body", buffered, "gzip",
			[]*extprocv3.ProcessingRequest{requestHeaders(false, ":path", "/"), requestBody([]byte("a"), false), requestBody([]byte("b"), true)},
			codes.FailedPrecondition, "second body message in BUFFERED mode"},
		{"trailers after end of stream", fullDuplex, "identity",
			[]*extprocv3.ProcessingRequest{requestHeaders(false, ":path", "/"), requestBody([]byte("a"), true), requestTrailers("x", "y")},
			codes.FailedPrecondition, "request trailers arrived after end of stream"},
		{"response body after its end of stream", fullDuplex, "identity",
			[]*extprocv3.ProcessingRequest{requestHeaders(true, ":path", "/"), responseHeaders(true, ":status", "200"), responseBody([]byte("late"), true)},
			codes.FailedPrecondition, "response body arrived after end of stream"},
		{"response headers twice", streamed, "identity",
			[]*extprocv3.ProcessingRequest{requestHeaders(true, ":path", "/"), responseHeaders(false, ":status", "200"), responseHeaders(false, ":status", "200")},
			codes.FailedPrecondition, "response headers arrived twice"},
		// Across directions: Envoy's filter sees the request headers before anything
		// of the response.
		{"request headers after the response's headers", fullDuplex, "identity",
			[]*extprocv3.ProcessingRequest{responseHeaders(false, ":status", "200"), requestHeaders(false, ":path", "/")},
			codes.FailedPrecondition, "request headers arrived after the response headers"},
		{"request headers after a complete response", fullDuplex, "identity",
			[]*extprocv3.ProcessingRequest{responseHeaders(false, ":status", "200"), responseBody([]byte("r"), true), requestHeaders(true, ":path", "/")},
			codes.FailedPrecondition, "request headers arrived after the response headers"},
		{"request headers after a response body (response header SKIP)", fullDuplex, "identity",
			[]*extprocv3.ProcessingRequest{responseBody([]byte("r"), false), requestHeaders(true, ":path", "/")},
			codes.FailedPrecondition, "request headers arrived after the response body"},
		{"BUFFERED body larger than its content-length", buffered, "gzip",
			[]*extprocv3.ProcessingRequest{requestHeaders(false, ":path", "/", "content-length", "1"), requestBody([]byte("ab"), true)},
			codes.FailedPrecondition, "request body of 2 bytes is larger than the 1 bytes reserved for it"},
		{"observability mode", fullDuplex, "identity",
			[]*extprocv3.ProcessingRequest{{ObservabilityMode: true, Request: requestHeaders(false).Request}},
			codes.FailedPrecondition, "observability_mode"},
		{"unsupported body mode", modes{5, 5}, "identity",
			[]*extprocv3.ProcessingRequest{requestHeaders(false, ":path", "/")},
			codes.FailedPrecondition, "body mode GRPC is not supported"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			spurious := ts.srv.metrics.spurious.WithLabelValues(spuriousProtocolViolation)
			protocolErrors := ts.srv.metrics.streams.WithLabelValues(resultProtocolError)
			spuriousBefore, protocolErrorsBefore := testutil.ToFloat64(spurious), testutil.ToFloat64(protocolErrors)
			e := ts.open(tc.route)
			for i, req := range tc.script {
				if i == 0 {
					req = e.withConfig(req, tc.mode)
				}
				if err := e.s.Send(req); err != nil {
					break // the server already ended the stream; Recv says why
				}
			}
			err := e.recvErr()
			st, _ := status.FromError(err)
			if st.Code() != tc.code || !strings.Contains(st.Message(), tc.contains) {
				t.Fatalf("stream ended with %v %q, want %v containing %q", st.Code(), st.Message(), tc.code, tc.contains)
			}
			// Process counts before it returns the status the client just read.
			if n, m := testutil.ToFloat64(spurious)-spuriousBefore, testutil.ToFloat64(protocolErrors)-protocolErrorsBefore; n != 1 || m != 1 {
				t.Errorf("counted %v spurious messages and %v protocol_error streams, want 1 each", n, m)
			}
		})
	}
}

// TestLegalCrossDirectionOrders: orders Envoy does send must not be refused. An
// upstream may answer, and finish answering, before it has read the whole request, so
// the request's body and trailers may follow the response's start and end; Envoy's
// local replies take the response path before the request was answered; with request
// header SKIP the response may come first.
func TestLegalCrossDirectionOrders(t *testing.T) {
	ts := newTestServer(t, testConfig)
	streamed := modes{modeStreamed, modeStreamed}
	cases := []struct {
		name  string
		mode  modes
		route string
		// script is sent in order, each message followed by reading the answers it
		// gets (answers[i] of them).
		script  []*extprocv3.ProcessingRequest
		answers []int
	}{
		{"full duplex: request body after the response ended", fullDuplex, "identity",
			[]*extprocv3.ProcessingRequest{requestHeaders(false, ":path", "/"), requestBody([]byte("a"), false),
				responseHeaders(false, ":status", "200"), responseBody([]byte("r"), true), requestBody([]byte("b"), true)},
			[]int{1, 1, 1, 2, 2}},
		{"full duplex: request trailers after the response's headers and body", fullDuplex, "gzip",
			[]*extprocv3.ProcessingRequest{requestHeaders(false, ":path", "/"), requestBody([]byte("a"), false),
				responseHeaders(false, ":status", "200"), responseBody([]byte("r"), false), requestTrailers("x", "y"), responseBody(nil, true)},
			[]int{1, 0, 1, 0, -1, -1}},
		{"streamed: response while the request body streams", streamed, "identity",
			[]*extprocv3.ProcessingRequest{requestHeaders(false, ":path", "/"), requestBody([]byte("a"), false),
				responseHeaders(true, ":status", "204"), requestBody([]byte("b"), true)},
			[]int{1, 1, 1, 1}},
		// Envoy's own local replies pass the response path before the request was
		// answered: its 413 for a BUFFERED body over its buffer limit (seen against
		// Envoy 1.40), a request timeout while the headers wait for a preview.
		{"local reply before the BUFFERED request body was answered", modes{modeBuffered, modeBuffered}, "gzip",
			[]*extprocv3.ProcessingRequest{requestHeaders(false, ":path", "/", "content-length", "1"), responseHeaders(false, ":status", "413"), responseBody([]byte("too large"), true)},
			[]int{1, 1, 1}},
		{"local reply before the request headers were answered", fullDuplex, "gzip-preview",
			[]*extprocv3.ProcessingRequest{requestHeaders(false, ":path", "/"), responseHeaders(true, ":status", "408")},
			[]int{0, 1}},
		{"request header SKIP: the response first", fullDuplex, "identity",
			[]*extprocv3.ProcessingRequest{responseHeaders(false, ":status", "200"), responseBody([]byte("r"), true)},
			[]int{1, 2}},
		{"request header SKIP: request body, then the response", fullDuplex, "identity",
			[]*extprocv3.ProcessingRequest{requestBody([]byte("a"), true), responseHeaders(true, ":status", "200")},
			[]int{2, 1}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := ts.open(tc.route)
			for i, req := range tc.script {
				if i == 0 {
					req = e.withConfig(req, tc.mode)
				}
				e.send(req)
				// -1: answers come later (gzip holds output until the end).
				for range max(tc.answers[i], 0) {
					if ir := e.recv().GetImmediateResponse(); ir != nil {
						t.Fatalf("message %d answered with an immediate response: %v", i, ir)
					}
				}
			}
			if err := e.s.CloseSend(); err != nil {
				t.Fatal(err)
			}
			for {
				resp, err := e.s.Recv()
				if err == io.EOF {
					return
				}
				if err != nil {
					t.Fatalf("stream ended with %v, want OK", err)
				}
				if ir := resp.GetImmediateResponse(); ir != nil {
					t.Fatalf("immediate response: %v", ir)
				}
			}
		})
	}
}
