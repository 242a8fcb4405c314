package server

import (
	"errors"
	"io"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
)

// waitSettled waits, bounded, for the server to have no stream active and no budget
// in use: the server learns of a client's reset on its own goroutines.
func waitSettled(t *testing.T, srv *Server) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for testutil.ToFloat64(srv.metrics.streamsActive) != 0 || testutil.ToFloat64(srv.metrics.budgetInUse) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("20s after the clients left: %v streams active, %v bytes of budget in use",
				testutil.ToFloat64(srv.metrics.streamsActive), testutil.ToFloat64(srv.metrics.budgetInUse))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestUnknownOneof: a ProcessingRequest whose only field is one this version of the
// protocol does not know is refused like an empty one, not taken for a message.
func TestUnknownOneof(t *testing.T) {
	ts := newTestServer(t, testConfig)
	e := ts.open("identity")
	req := &extprocv3.ProcessingRequest{}
	unknown := protowire.AppendTag(nil, 99, protowire.BytesType)
	unknown = protowire.AppendBytes(unknown, []byte("from a future Envoy"))
	req.ProtoReflect().SetUnknown(unknown)
	e.send(e.withConfig(req, fullDuplex))
	err := e.recvErr()
	if st, _ := status.FromError(err); st.Code() != codes.InvalidArgument || !strings.Contains(st.Message(), "carries no message") {
		t.Fatalf("stream ended with %v, want InvalidArgument saying the request carries no message", err)
	}
	waitSettled(t, ts.srv)
}

// TestOversizeMessage: a body message over the receive limit ends the stream with
// ResourceExhausted before it is read, and the server serves the next stream.
func TestOversizeMessage(t *testing.T) {
	ts := newTestServer(t, "max_buffered_body: 64KiB\n"+testConfig)
	e := ts.open("identity")
	e.send(e.withConfig(requestHeaders(false, ":path", "/up"), modes{modeBuffered, modeBuffered}))
	e.recv()
	e.s.Send(requestBody(make([]byte, 1<<20), true)) // the server may end the stream first
	err := e.recvErr()
	if code := status.Code(err); code != codes.ResourceExhausted {
		t.Fatalf("stream ended with %v, want ResourceExhausted", err)
	}
	waitSettled(t, ts.srv)

	next := ts.open("gzip")
	next.send(next.withConfig(requestHeaders(false, ":path", "/up"), fullDuplex))
	next.send(requestBody(text(10<<10), true))
	next.recv() // headers
	if got := gunzip(t, next.streamedBodies(4<<10+messageOverhead)); len(got) != 10<<10 {
		t.Fatalf("the next stream's body decoded to %d bytes, want %d", len(got), 10<<10)
	}
}

// TestIdleStreams: 2,000 streams opened and left idle after their request headers
// cost goroutines and their exchanges' admission, never more than the budget; a
// working stream is served beside them, and when their clients leave nothing is left
// behind (goleak in TestMain).
func TestIdleStreams(t *testing.T) {
	if testing.Short() {
		t.Skip("2,000 streams")
	}
	// One connection carries them all, as many Envoy workers' streams share one; the
	// default limit of 1,024 streams a connection would make the client queue the rest.
	// The budget admits every identity exchange: a chunk a direction and the
	// stream's transport (a 64 KiB window, grpc-go's 64 KiB write quota and six
	// chunks), 160 KiB in all.
	ts := newTestServer(t, "grpc: {max_concurrent_streams: 4096, stream_window: 64KiB, conn_window: 256MiB}\nmemory: {budget: 512MiB}\n"+testConfig)
	const idle = 2000
	before := runtime.NumGoroutine()
	streams := make([]*envoyStream, idle)
	for i := range streams {
		e := ts.open("identity")
		e.send(e.withConfig(requestHeaders(false, ":path", "/up"), fullDuplex))
		streams[i] = e
	}
	for _, e := range streams {
		e.recv() // the request headers' answer: admitted
	}
	// Each idle stream holds its receive and send goroutines and gRPC's own; a
	// pipeline or a timer per stream would show as more.
	if per := float64(runtime.NumGoroutine()-before) / idle; per > 6 {
		t.Errorf("%.1f goroutines per idle stream, want at most 6", per)
	}
	if inUse := testutil.ToFloat64(ts.srv.metrics.budgetInUse); inUse > 512<<20 {
		t.Errorf("idle streams hold %v bytes of budget, more than the whole budget", inUse)
	}

	working := ts.open("gzip")
	working.send(working.withConfig(requestHeaders(false, ":path", "/up"), fullDuplex))
	working.send(requestBody(text(20<<10), true))
	working.recv()
	if got := gunzip(t, working.streamedBodies(4<<10+messageOverhead)); len(got) != 20<<10 {
		t.Fatalf("the working stream's body decoded to %d bytes, want %d", len(got), 20<<10)
	}

	working.cancel()
	for _, e := range streams {
		e.cancel()
	}
	waitSettled(t, ts.srv)
}

// TestHalfClosedMidBody: 200 streams whose Envoy side closes in the middle of a body
// end without their body ever being answered as complete, and give back everything.
func TestHalfClosedMidBody(t *testing.T) {
	ts := newTestServer(t, testConfig)
	var wg sync.WaitGroup
	errs := make(chan error, 200)
	for i := range 200 {
		mode := fullDuplex
		if i%2 == 1 {
			mode = modes{modeStreamed, modeStreamed}
		}
		e := ts.open("gzip")
		wg.Go(func() {
			e.send(e.withConfig(requestHeaders(false, ":path", "/up"), mode))
			e.send(requestBody(text(10<<10), false))
			e.s.CloseSend()
			for {
				resp, err := e.s.Recv()
				if err != nil {
					if !errors.Is(err, io.EOF) && status.Code(err) == codes.Unknown {
						errs <- err
					}
					return
				}
				if resp.GetRequestBody().GetResponse().GetBodyMutation().GetStreamedResponse().GetEndOfStream() {
					errs <- errors.New("a half-closed body was answered with end_of_stream")
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	waitSettled(t, ts.srv)
}

// TestClientNeverReads: an Envoy that sends a large body but never reads the answers
// is held back by flow control: bodystream stops reading within its windows, and
// what it took is bounded however much the client offers.
func TestClientNeverReads(t *testing.T) {
	ts := newTestServer(t, testConfig)
	e := ts.open("identity")
	e.send(e.withConfig(requestHeaders(false, ":path", "/up"), fullDuplex))
	var sent atomic.Int64
	chunk := randomBytes(16<<10, 3)
	sender := make(chan error, 1)
	go func() {
		for range 64 << 20 / len(chunk) {
			if err := e.s.Send(requestBody(chunk, false)); err != nil {
				sender <- err
				return
			}
			sent.Add(int64(len(chunk)))
		}
		sender <- nil
	}()
	// The sender stalls once every window and queue between it and the server's
	// pipeline is full; wait for a second with no progress.
	last, stable := int64(-1), time.Now()
	for deadline := time.Now().Add(60 * time.Second); time.Since(stable) < time.Second; {
		select {
		case err := <-sender:
			t.Fatalf("the client sent all 64 MiB (err %v) without reading a response: nothing held it back", err)
		default:
		}
		if n := sent.Load(); n != last {
			last, stable = n, time.Now()
		}
		if time.Now().After(deadline) {
			t.Fatalf("the client was still sending after 60s (%d bytes)", last)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Windows: the client's and the server's stream windows (256 KiB each way, plus
	// bufconn's 1 MiB), the pipeline's pipes and one queued reply.
	if n := sent.Load(); n > 4<<20 {
		t.Fatalf("the client sent %d bytes that nobody read, want at most 4 MiB", n)
	}
	e.cancel()
	if err := <-sender; err == nil {
		t.Fatal("the sender finished after the stream was cancelled")
	}
	waitSettled(t, ts.srv)
}
