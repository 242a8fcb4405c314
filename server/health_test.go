package server

import (
	"bytes"
	"context"
	"io"
	"strings"
	"testing"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// newDrainTestServer serves bodystream with its stream interceptor, as app does.
func newDrainTestServer(t *testing.T, yamlText string) *testServer {
	t.Helper()
	srv, _ := newServer(t, yamlText)
	return serveTest(t, srv, grpc.ChainStreamInterceptor(srv.StreamInterceptor()))
}

// TestDrainRefusesThenCuts: once RefuseNewStreams is called a new stream fails at
// once with UNAVAILABLE while those in flight carry on and can finish; CutOpenStreams
// then ends the one left with UNAVAILABLE naming the drain timeout, never with a
// clean end.
func TestDrainRefusesThenCuts(t *testing.T) {
	ts := newDrainTestServer(t, testConfig)
	var inflight [2]*envoyStream
	for i := range inflight {
		inflight[i] = ts.open("gzip")
		inflight[i].send(inflight[i].withConfig(requestHeaders(false, ":path", "/a"), fullDuplex))
		if inflight[i].recv().GetRequestHeaders() == nil {
			t.Fatal("want the in-flight stream's headers response")
		}
	}
	if n := ts.srv.OpenStreams(); n != 2 {
		t.Fatalf("OpenStreams() = %d with two streams in flight", n)
	}

	ts.srv.RefuseNewStreams()
	late := ts.open("gzip")
	// The refusal may come before the headers are sent; Send then reports io.EOF and
	// Recv the status.
	late.s.Send(late.withConfig(requestHeaders(false, ":path", "/b"), fullDuplex))
	if err := late.recvErr(); status.Code(err) != codes.Unavailable {
		t.Fatalf("new stream while draining ended with %v, want UNAVAILABLE", err)
	}

	// A stream in flight still finishes, whole.
	body := text(10 << 10)
	inflight[0].send(requestBody(body, true))
	if !bytes.Equal(gunzip(t, inflight[0].streamedBodies(4<<10)), body) {
		t.Fatal("in-flight stream's body differs once new streams were refused")
	}
	inflight[0].s.CloseSend()
	if err := inflight[0].recvErr(); err != io.EOF {
		t.Fatalf("finished stream ended with %v, want a clean end", err)
	}

	if n := ts.srv.CutOpenStreams(); n != 1 {
		t.Fatalf("CutOpenStreams() = %d, want the one left in flight", n)
	}
	// Envoy goes on uploading; the cut stream's handler sees its context ended at the
	// next message (an idle one waits in Recv until the caller stops the gRPC server).
	inflight[1].send(requestBody(body, false))
	err := inflight[1].recvErr()
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "drain timeout") {
		t.Fatalf("cut stream ended with %v, want UNAVAILABLE naming the drain timeout", err)
	}
	// The client saw the status after the handler returned, so the count is final.
	if n := ts.srv.OpenStreams(); n != 0 {
		t.Fatalf("OpenStreams() = %d after the cut", n)
	}
}

func TestServiceNameIsExtProcs(t *testing.T) {
	if want := extprocv3.ExternalProcessor_ServiceDesc.ServiceName; ServiceName != want || processMethod != "/"+want+"/Process" {
		t.Fatalf("ServiceName %q, processMethod %q; the generated service is %q", ServiceName, processMethod, want)
	}
}

func TestBudgetExhaustedSince(t *testing.T) {
	cases := []struct {
		name     string
		yaml     string
		reserve  int64 // bytes taken from the budget before asking
		wantFull bool
	}{
		{"no budget", "memory: {budget: 0}", 0, false},
		{"idle", "memory: {budget: 1MiB}", 0, false},
		{"partly used", "memory: {budget: 1MiB}", 512 << 10, false},
		{"less than a sixteenth free", "memory: {budget: 1MiB}", 1<<20 - 32<<10, true},
		{"all of it", "memory: {budget: 1MiB}", 1 << 20, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv, _ := newServer(t, tc.yaml)
			got, err := srv.budget.acquire(context.Background(), tc.reserve)
			if err != nil {
				t.Fatal(err)
			}
			since, full := srv.BudgetExhaustedSince()
			if full != tc.wantFull {
				t.Fatalf("full = %t, want %t", full, tc.wantFull)
			}
			if full {
				again, stillFull := srv.BudgetExhaustedSince()
				if !stillFull || !again.Equal(since) {
					t.Fatalf("second look: %v %t, want the first time %v", again, stillFull, since)
				}
			}
			srv.budget.release(got)
			if _, full := srv.BudgetExhaustedSince(); full {
				t.Fatal("still spent once released")
			}
		})
	}
}
