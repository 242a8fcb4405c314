package server

import (
	"bytes"
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
	// The first stream released its share when its body ended.
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
