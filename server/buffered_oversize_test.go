package server

import (
	"testing"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
)

// TestBufferedOversized: a BUFFERED body longer than max_buffered_body is not
// processed. A request's gets 413 before it goes upstream: at its headers when its
// content-length says so, else when it arrives. A response's passes through as
// Envoy holds it: its upstream has already carried out the request.
func TestBufferedOversized(t *testing.T) {
	ts := newTestServer(t, "max_buffered_body: 8KiB\n"+testConfig)
	buffered := modes{modeBuffered, modeBuffered}
	big := text(8<<10 + 1)

	t.Run("request content-length", func(t *testing.T) {
		e := ts.open("gzip")
		defer e.cancel()
		e.send(e.withConfig(requestHeaders(false, ":path", "/up", "content-length", itoa(len(big))), buffered))
		if got := e.recv().GetImmediateResponse().GetStatus().GetCode(); got != 413 {
			t.Fatalf("want a 413 at the headers, got status %v", got)
		}
	})
	t.Run("request without content-length", func(t *testing.T) {
		e := ts.open("gzip")
		defer e.cancel()
		e.send(e.withConfig(requestHeaders(false, ":path", "/up"), buffered))
		e.recv()
		e.send(requestBody(big, true))
		if got := e.recv().GetImmediateResponse().GetStatus().GetCode(); got != 413 {
			t.Fatalf("want a 413 for the body, got status %v", got)
		}
	})
	for _, withLength := range []bool{true, false} {
		name := "response without content-length"
		kv := []string{":status", "200"}
		if withLength {
			name = "response content-length"
			kv = append(kv, "content-length", itoa(len(big)))
		}
		t.Run(name, func(t *testing.T) {
			e := ts.open("gzip")
			defer e.cancel()
			e.send(e.withConfig(requestHeaders(true, ":path", "/up"), buffered))
			e.recv()
			e.send(responseHeaders(false, kv...))
			if mutationOf(e.recv()) != nil {
				t.Fatal("the oversized response's headers were edited")
			}
			e.send(responseBody(big, true))
			var body *extprocv3.BodyResponse
			if body = e.recv().GetResponseBody(); body == nil {
				t.Fatal("want the response body answered")
			}
			if body.GetResponse().GetBodyMutation() != nil || body.GetResponse().GetHeaderMutation() != nil {
				t.Fatalf("the oversized response was changed: %v", body)
			}
		})
	}
	waitSettled(t, ts.srv)
}
