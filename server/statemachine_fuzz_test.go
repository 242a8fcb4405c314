package server

import (
	"errors"
	"fmt"
	"io"
	"testing"
	"time"

	filterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/bodystream/bodystream/stage"
)

// fuzzModes are the body modes a fuzzed stream declares, indexed by a script byte.
var fuzzModes = []filterv3.ProcessingMode_BodySendMode{
	modeNone, modeStreamed, modeBuffered, modePartial, modeFullDuplex,
	filterv3.ProcessingMode_GRPC,
}

// fuzzRoutes are testConfig's routes, indexed by a script byte.
var fuzzRoutes = []string{"identity", "gzip", "gzip-preview", "by-path", "no-such-route"}

// fuzzScript is a stream as the fuzzer wrote it: the declared modes, the route, and
// the messages in the order Envoy (or something pretending to be Envoy) sends them.
type fuzzScript struct {
	modes    modes
	route    string
	messages []*extprocv3.ProcessingRequest
}

// String lists the script's messages, so that a failing input reads as a protocol trace.
func (s fuzzScript) String() string {
	out := fmt.Sprintf("modes request=%s response=%s route=%q:", s.modes.request, s.modes.response, s.route)
	for _, m := range s.messages {
		out += "\n  " + describeRequest(m)
	}
	return out
}

func describeRequest(m *extprocv3.ProcessingRequest) string {
	switch r := m.Request.(type) {
	case *extprocv3.ProcessingRequest_RequestHeaders:
		return fmt.Sprintf("request headers eos=%v", r.RequestHeaders.GetEndOfStream())
	case *extprocv3.ProcessingRequest_ResponseHeaders:
		return fmt.Sprintf("response headers eos=%v", r.ResponseHeaders.GetEndOfStream())
	case *extprocv3.ProcessingRequest_RequestBody:
		return fmt.Sprintf("request body %dB eos=%v", len(r.RequestBody.GetBody()), r.RequestBody.GetEndOfStream())
	case *extprocv3.ProcessingRequest_ResponseBody:
		return fmt.Sprintf("response body %dB eos=%v", len(r.ResponseBody.GetBody()), r.ResponseBody.GetEndOfStream())
	case *extprocv3.ProcessingRequest_RequestTrailers:
		return "request trailers"
	case *extprocv3.ProcessingRequest_ResponseTrailers:
		return "response trailers"
	case nil:
		return "empty oneof"
	}
	return fmt.Sprintf("%T", m.Request)
}

// parseFuzzScript turns fuzzer bytes into a stream: byte 0 picks the request mode,
// byte 1 the response mode, byte 2 the route; then every two bytes are one message,
// its kind and a size-and-end-of-stream argument. Bodies stay small so that a script
// explores orders, not volume.
func parseFuzzScript(data []byte) fuzzScript {
	at := func(i int) byte {
		if i < len(data) {
			return data[i]
		}
		return 0
	}
	s := fuzzScript{
		modes: modes{fuzzModes[int(at(0))%len(fuzzModes)], fuzzModes[int(at(1))%len(fuzzModes)]},
		route: fuzzRoutes[int(at(2))%len(fuzzRoutes)],
	}
	const maxMessages = 24
	for i := 3; i+1 < len(data) && len(s.messages) < maxMessages; i += 2 {
		kind, arg := data[i], data[i+1]
		eos := arg&1 == 1
		body := text(int(arg>>1) * 97) // up to about 12 KiB, over several 4 KiB chunks
		var m *extprocv3.ProcessingRequest
		switch kind % 8 {
		case 0:
			m = requestHeaders(eos, ":path", "/zip/up", "content-type", "application/json", "x-request-id", "fuzz")
		case 1:
			m = requestBody(body, eos)
		case 2:
			m = requestTrailers("x-trailer", "1")
		case 3:
			m = responseHeaders(eos, ":status", "200", "content-type", "application/json")
		case 4:
			m = responseBody(body, eos)
		case 5:
			m = &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseTrailers{
				ResponseTrailers: &extprocv3.HttpTrailers{Trailers: headers("x-trailer", "1")}}}
		case 6:
			m = &extprocv3.ProcessingRequest{}
		case 7:
			m = requestHeaders(eos) // no :path, no request id
		}
		s.messages = append(s.messages, m)
	}
	return s
}

// responseChecker follows the responses of one stream and reports the first that
// Envoy would refuse given the declared modes: an answer twice, a body answer before
// the headers answer, anything after the end of a body or after an immediate response,
// or a body answer of the wrong shape for the mode.
type responseChecker struct {
	modes modes
	dirs  [2]struct {
		headers, ended, trailers bool
		bodies                   int
	}
	final bool
}

func (c *responseChecker) mode(d stage.Direction) filterv3.ProcessingMode_BodySendMode {
	if d == stage.Request {
		return c.modes.request
	}
	return c.modes.response
}

func (c *responseChecker) check(resp *extprocv3.ProcessingResponse) error {
	if c.final {
		return fmt.Errorf("%v after an immediate response", resp)
	}
	var (
		d    stage.Direction
		body *extprocv3.BodyResponse
	)
	switch r := resp.Response.(type) {
	case *extprocv3.ProcessingResponse_ImmediateResponse:
		c.final = true
		return nil
	case *extprocv3.ProcessingResponse_RequestHeaders:
		return c.headers(stage.Request)
	case *extprocv3.ProcessingResponse_ResponseHeaders:
		return c.headers(stage.Response)
	case *extprocv3.ProcessingResponse_RequestTrailers:
		return c.trailers(stage.Request)
	case *extprocv3.ProcessingResponse_ResponseTrailers:
		return c.trailers(stage.Response)
	case *extprocv3.ProcessingResponse_RequestBody:
		d, body = stage.Request, r.RequestBody
	case *extprocv3.ProcessingResponse_ResponseBody:
		d, body = stage.Response, r.ResponseBody
	default:
		return fmt.Errorf("response of unexpected kind %T", resp.Response)
	}
	st := &c.dirs[d]
	mode := c.mode(d)
	switch {
	case st.ended:
		return fmt.Errorf("%s body answer after that body ended", d)
	case mode == modeNone:
		return fmt.Errorf("%s body answer in mode NONE", d)
	case (mode == modeBuffered || mode == modePartial) && st.bodies > 0:
		return fmt.Errorf("second %s body answer in %s mode", d, mode)
	}
	st.bodies++
	streamed := body.GetResponse().GetBodyMutation().GetStreamedResponse()
	if mode == modeFullDuplex {
		if streamed == nil {
			return fmt.Errorf("%s body answer in FULL_DUPLEX_STREAMED mode without a streamed_response: %v", d, resp)
		}
		st.ended = streamed.GetEndOfStream()
	} else if streamed != nil {
		return fmt.Errorf("%s streamed_response in %s mode", d, mode)
	}
	return nil
}

func (c *responseChecker) headers(d stage.Direction) error {
	st := &c.dirs[d]
	switch {
	case st.headers:
		return fmt.Errorf("%s headers answered twice", d)
	case st.bodies > 0:
		return fmt.Errorf("%s headers answered after its body", d)
	}
	st.headers = true
	return nil
}

func (c *responseChecker) trailers(d stage.Direction) error {
	st := &c.dirs[d]
	if st.trailers {
		return fmt.Errorf("%s trailers answered twice", d)
	}
	st.trailers = true
	return nil
}

// FuzzStreamStateMachine feeds the server any sequence of ProcessingRequest messages
// in any declared modes. Whatever arrives, the server must not panic, every stream
// must end (with OK or a status, never a hang), the responses must come in an order
// Envoy accepts for the declared modes with at most one end of body per direction,
// and once the stream has ended its budget, active-stream count and invariants are
// as they were.
func FuzzStreamStateMachine(f *testing.F) {
	for _, seed := range [][]byte{
		// full duplex, gzip: request headers, two bodies, response headers, one body.
		{4, 4, 1, 0, 0, 1, 40, 1, 41, 3, 0, 4, 21},
		// streamed identity with trailers on both sides.
		{1, 1, 0, 0, 0, 1, 60, 2, 0, 3, 0, 4, 60, 5, 0},
		// buffered gzip, one body each way.
		{2, 2, 1, 0, 0, 1, 121, 3, 0, 4, 121},
		// partial: a body that does not end.
		{3, 3, 1, 0, 0, 1, 120, 3, 1},
		// response before request: an order Envoy never sends.
		{4, 4, 0, 3, 0, 0, 0, 1, 3},
		// an empty oneof, an unsupported mode, request headers twice.
		{5, 0, 0, 6, 0},
		{4, 4, 0, 0, 0, 0, 0},
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		script := parseFuzzScript(data)
		ts := newTestServer(t, testConfig)
		e := ts.open(script.route)

		// Responses are read while the script is sent, as Envoy does, so that a
		// server blocked on a full send window cannot stall the script.
		type outcome struct {
			err        error
			violations error
		}
		read := make(chan outcome, 1)
		go func() {
			c := responseChecker{modes: script.modes}
			var bad error
			for {
				resp, err := e.s.Recv()
				if err != nil {
					read <- outcome{err: err, violations: bad}
					return
				}
				if bad == nil {
					bad = c.check(resp)
				}
			}
		}()
		for i, m := range script.messages {
			if i == 0 {
				m = e.withConfig(m, script.modes)
			}
			if err := e.s.Send(m); err != nil {
				break // the server ended the stream; the reader learns how
			}
		}
		e.s.CloseSend()

		var got outcome
		select {
		case got = <-read:
		case <-time.After(20 * time.Second):
			e.cancel()
			t.Fatalf("the stream did not end 20s after Envoy's side closed\n%s", script)
		}
		if got.violations != nil {
			t.Fatalf("%v\n%s", got.violations, script)
		}
		if !errors.Is(got.err, io.EOF) {
			if code := status.Code(got.err); code == codes.Unknown || code == codes.Internal {
				t.Fatalf("stream ended with %v, want OK or a protocol status\n%s", got.err, script)
			}
		}
		assertServerSettled(t, ts.srv, script)
	})
}

// assertServerSettled checks what a stream must give back when it ends. The client
// learns the status only after Process has returned, so nothing here waits.
func assertServerSettled(t *testing.T, srv *Server, script fmt.Stringer) {
	t.Helper()
	if v := testutil.ToFloat64(srv.metrics.budgetInUse); v != 0 {
		t.Fatalf("memory budget in use %v after the stream ended, want 0\n%s", v, script)
	}
	if v := testutil.ToFloat64(srv.metrics.streamsActive); v != 0 {
		t.Fatalf("%v streams active after the stream ended, want 0\n%s", v, script)
	}
	if n := counterSum(t, srv.metrics.invariantViolations); n != 0 {
		t.Fatalf("%v invariant violations recorded\n%s", n, script)
	}
}

// counterSum adds up every series of a counter vector.
func counterSum(t *testing.T, c prometheus.Collector) float64 {
	t.Helper()
	ch := make(chan prometheus.Metric)
	go func() {
		c.Collect(ch)
		close(ch)
	}()
	var sum float64
	for m := range ch {
		var out dto.Metric
		if err := m.Write(&out); err != nil {
			t.Fatal(err)
		}
		sum += out.GetCounter().GetValue()
	}
	return sum
}
