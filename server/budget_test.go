package server

import (
	"bytes"
	"compress/gzip"
	"io"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestBudgetRefusesWhenSpent: with room for one gzip body, a second concurrent one
// waits the admission time and is refused with 503 and retry-after; once the first
// ends, the budget is whole again and a new body runs.
func TestBudgetRefusesWhenSpent(t *testing.T) {
	ts := newTestServer(t, `
chunk_size: 4KiB
memory: {budget: 1MiB, admission_wait: 20ms, retry_after: 3s}
pipelines:
  gzip-now: [{gzip: {level: 1, preview_bytes: 0}}]
routes:
  - {name: gzip, request: gzip-now, response: identity}
`)
	body := text(32 << 10)
	first := ts.open("gzip")
	first.send(first.withConfig(requestHeaders(false, ":path", "/a"), fullDuplex))
	if first.recv().GetRequestHeaders() == nil {
		t.Fatal("first stream: want its headers response")
	}
	if inUse := testutil.ToFloat64(ts.srv.metrics.budgetInUse); inUse < 800<<10 {
		t.Fatalf("budget in use %v while a gzip body runs, want its ~840 KiB estimate", inUse)
	}

	second := ts.open("gzip")
	second.send(second.withConfig(requestHeaders(false, ":path", "/b"), fullDuplex))
	ir := second.recv().GetImmediateResponse()
	if ir.GetStatus().GetCode() != 503 {
		t.Fatalf("second stream: want an immediate 503, got %v", ir)
	}
	if v, _ := setValue(ir.GetHeaders(), "retry-after"); v != "3" {
		t.Errorf("retry-after %q, want 3", v)
	}

	first.send(requestBody(body, true))
	if !bytes.Equal(gunzip(t, first.streamedBodies(4<<10)), body) {
		t.Fatal("first stream's body differs")
	}
	// The first stream gives its reservation back when it ends, as Envoy ends it
	// after the last response.
	if err := first.s.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if err := first.recvErr(); err != io.EOF {
		t.Fatalf("first stream ended with %v, want OK", err)
	}
	third := ts.open("gzip")
	third.send(third.withConfig(requestHeaders(false, ":path", "/c"), fullDuplex))
	if third.recv().GetRequestHeaders() == nil {
		t.Fatal("third stream: want its headers response once the budget is free")
	}
	third.send(requestBody(body, true))
	if !bytes.Equal(gunzip(t, third.streamedBodies(4<<10)), body) {
		t.Fatal("third stream's body differs")
	}
	if got := testutil.ToFloat64(ts.srv.metrics.immediateResponses.WithLabelValues("503", "budget")); got != 1 {
		t.Errorf("503 rejections counted %v, want 1", got)
	}
}

// TestBufferedReservedAtHeaders: a BUFFERED body's reservation (its content-length,
// received whole, and an output as large) is made at its headers, and the headers are answered only once it
// is, so that Envoy sends the body counted. A stream that cannot reserve gets its 503
// at the headers, before any body moves.
func TestBufferedReservedAtHeaders(t *testing.T) {
	ts := newTestServer(t, `
chunk_size: 4KiB
max_buffered_body: 1MiB
memory: {budget: 3MiB, admission_wait: 20ms, retry_after: 2s}
routes:
  - {name: identity, request: identity, response: identity}
`)
	bufferedRequest := modes{modeBuffered, modeNone}
	const size = 512 << 10
	const reserved = (receivedCopies + replyCopies) * size
	first := ts.open("identity")
	first.send(first.withConfig(requestHeaders(false, ":path", "/a", "content-length", itoa(size)), bufferedRequest))
	if first.recv().GetRequestHeaders() == nil {
		t.Fatal("first stream: want its headers response")
	}
	if inUse := testutil.ToFloat64(ts.srv.metrics.budgetInUse); inUse != reserved {
		t.Fatalf("budget in use %v after the headers, want %d: the body as it is received and its output", inUse, reserved)
	}

	second := ts.open("identity")
	second.send(second.withConfig(requestHeaders(false, ":path", "/b", "content-length", itoa(size)), bufferedRequest))
	ir := second.recv().GetImmediateResponse()
	if ir.GetStatus().GetCode() != 503 {
		t.Fatalf("second stream: want a 503 at its headers, got %v", ir)
	}
	if v, _ := setValue(ir.GetHeaders(), "retry-after"); v != "2" {
		t.Errorf("retry-after %q, want 2", v)
	}

	first.send(requestBody(text(size), true))
	if br := first.recv().GetRequestBody(); br == nil || br.GetResponse().GetBodyMutation() != nil {
		t.Fatalf("first stream: want its body answered with Envoy's copy kept, got %v", br)
	}
	// A small body reserves what its content-length says.
	third := ts.open("identity")
	third.send(third.withConfig(requestHeaders(false, ":path", "/c", "content-length", "10"), bufferedRequest))
	if third.recv().GetRequestHeaders() == nil {
		t.Fatal("third stream: want its headers response")
	}
	if inUse := testutil.ToFloat64(ts.srv.metrics.budgetInUse); inUse != (receivedCopies+replyCopies)*10 {
		t.Fatalf("budget in use %v, want %d: the first body's share is back and the third holds its own", inUse, (receivedCopies+replyCopies)*10)
	}
}

// TestResponseNeverRefusedAfterAdmission: the response's share is reserved with the
// request's, so a response that arrives while the budget is spent by later streams
// still runs its pipeline; only the later stream, at its request headers, gets 503.
func TestResponseNeverRefusedAfterAdmission(t *testing.T) {
	ts := newTestServer(t, `
chunk_size: 4KiB
memory: {budget: 2MiB, admission_wait: 20ms}
pipelines:
  gzip-now: [{gzip: {level: 1, preview_bytes: 0}}]
routes:
  - {name: gzip, request: gzip-now, response: gzip-now}
  - {name: gzip-request, request: gzip-now, response: identity}
`)
	body := text(64 << 10)
	first := ts.open("gzip")
	first.send(first.withConfig(requestHeaders(false, ":path", "/a"), fullDuplex))
	if first.recv().GetRequestHeaders() == nil {
		t.Fatal("first stream: want its headers response")
	}
	second := ts.open("gzip")
	second.send(second.withConfig(requestHeaders(false, ":path", "/b"), fullDuplex))
	if ir := second.recv().GetImmediateResponse(); ir.GetStatus().GetCode() != 503 {
		t.Fatalf("second stream: want 503 at its request headers, got %v", ir)
	}
	first.send(requestBody(body, true))
	if !bytes.Equal(gunzip(t, first.streamedBodies(4<<10)), body) {
		t.Fatal("first stream's request body differs")
	}
	// The request's share is back; a third stream takes it, leaving less than a
	// response pipeline needs.
	third := ts.open("gzip-request")
	third.send(third.withConfig(requestHeaders(false, ":path", "/c"), fullDuplex))
	if third.recv().GetRequestHeaders() == nil {
		t.Fatal("third stream: want its headers response")
	}
	first.send(responseHeaders(false, ":status", "200"))
	m := mutationOf(first.recv())
	if enc, _ := setValue(m, "content-encoding"); enc != "gzip" {
		t.Fatalf("first stream's response: want it compressed (content-encoding gzip), got %v", m)
	}
	first.send(responseBody(body, true))
	if !bytes.Equal(gunzip(t, first.streamedBodies(4<<10)), body) {
		t.Fatal("first stream's response body differs")
	}
	if got := testutil.ToFloat64(ts.srv.metrics.immediateResponses.WithLabelValues("503", "budget")); got != 1 {
		t.Errorf("503 rejections counted %v, want 1 (the second stream's)", got)
	}
}

// TestResponseWithoutBudgetPassesUntouched: a response that comes without an
// admission (request header mode SKIP: Envoy sent the request upstream without
// asking) and finds the budget spent passes through untouched instead of 503: its
// body comes back byte for byte, without content-encoding, and it is counted.
func TestResponseWithoutBudgetPassesUntouched(t *testing.T) {
	ts := newTestServer(t, `
chunk_size: 4KiB
memory: {budget: 1MiB, admission_wait: 20ms}
pipelines:
  gzip-now: [{gzip: {level: 1, preview_bytes: 0}}]
routes:
  - {name: gzip, request: gzip-now, response: gzip-now}
`)
	// A stream that needs more than the whole budget holds all of it.
	holder := ts.open("gzip")
	holder.send(holder.withConfig(requestHeaders(false, ":path", "/a"), fullDuplex))
	if holder.recv().GetRequestHeaders() == nil {
		t.Fatal("holder: want its headers response")
	}
	body := text(20 << 10)
	for _, mode := range []modes{fullDuplex, {modeNone, modeStreamed}} {
		t.Run(modeName(mode.response), func(t *testing.T) {
			e := ts.open("gzip")
			e.send(e.withConfig(responseHeaders(false, ":status", "200"), mode))
			if m := mutationOf(e.recv()); m != nil {
				t.Fatalf("want the response headers passed unchanged, got %v", m)
			}
			if mode.response == modeFullDuplex {
				e.send(responseBody(body, true))
				if got := e.streamedBodies(4 << 10); !bytes.Equal(got, body) {
					t.Fatalf("passed-through body differs: %d bytes, want %d", len(got), len(body))
				}
				return
			}
			e.send(responseBody(body, true))
			if br := e.recv().GetResponseBody(); br == nil || br.GetResponse().GetBodyMutation() != nil {
				t.Fatalf("want the chunk answered with Envoy's copy kept, got %v", br)
			}
		})
	}
	if got := testutil.ToFloat64(ts.srv.metrics.passedUntouched.WithLabelValues("response")); got != 2 {
		t.Errorf("responses passed untouched counted %v, want 2", got)
	}
	if got := testutil.ToFloat64(ts.srv.metrics.immediateResponses.WithLabelValues("503", "budget")); got != 0 {
		t.Errorf("503 rejections counted %v, want none", got)
	}
}

// TestBufferedResponseOutgrowingBudgetPassesUntouched: a BUFFERED response whose
// output outgrows its body (a decompressor's) reserves the output as it grows; when
// the budget has no more, the response passes through untouched (Envoy keeps its copy)
// rather than failing or answering 503, and that is counted.
func TestBufferedResponseOutgrowingBudgetPassesUntouched(t *testing.T) {
	ts := newTestServer(t, `
chunk_size: 4KiB
max_buffered_body: 1MiB
memory: {budget: 4MiB, admission_wait: 20ms}
pipelines:
  inflate: [{decompress: {encoding: auto, max_ratio: 10000}}]
routes:
  - {name: inflate, request: identity, response: inflate}
`)
	var zipped bytes.Buffer
	zw := gzip.NewWriter(&zipped)
	// 3 MiB of output: its reply and marshalled copy need more than the budget holds.
	zw.Write(make([]byte, 3<<20))
	zw.Close()
	e := ts.open("inflate")
	e.send(e.withConfig(requestHeaders(true, ":path", "/get"), modes{modeNone, modeBuffered}))
	if e.recv().GetRequestHeaders() == nil {
		t.Fatal("want the request headers response")
	}
	e.send(responseHeaders(false, ":status", "200", "content-encoding", "gzip", "content-length", itoa(zipped.Len())))
	if e.recv().GetResponseHeaders() == nil {
		t.Fatal("want the response headers response")
	}
	e.send(responseBody(zipped.Bytes(), true))
	resp := e.recv()
	if br := resp.GetResponseBody(); br == nil || br.GetResponse().GetBodyMutation() != nil || br.GetResponse().GetHeaderMutation() != nil {
		t.Fatalf("want the body answered untouched (Envoy's copy kept), got %v", resp)
	}
	if got := testutil.ToFloat64(ts.srv.metrics.passedUntouched.WithLabelValues("response")); got != 1 {
		t.Errorf("responses passed untouched counted %v, want 1", got)
	}
	if inUse := testutil.ToFloat64(ts.srv.metrics.budgetInUse); inUse != 0 {
		t.Errorf("budget in use %v after the response ended, want 0", inUse)
	}
}
