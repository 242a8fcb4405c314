package server

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"hash"
	"io"
	"iter"
	"math/rand/v2"
	"runtime"
	"sync"
	"testing"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc"

	"github.com/bodystream/bodystream/stage"
)

// The shape of bodystream's memory, asserted rather than timed: a receiver (Envoy's
// side of the response path) that stops reading, or a stage that stops taking input,
// must stop bodystream's Recv so that the sender blocks, instead of the body piling
// up in the server's heap.
//
// Proving that the sender "stays blocked" is proving a negative: no event says that
// nothing will happen any more. The only evidence is that progress stopped for a
// while, so these tests poll the sender's byte counter until it has not moved for
// stallQuiet, within stallLimit. On a loaded machine a sender that is merely slow could
// look stalled for stallQuiet; that errs towards a smaller sent count, never a larger
// one, so the bound is checked once more at the end of the test. The limit is
// generous so that a slow machine does not fail the test.

const (
	stallQuiet = 300 * time.Millisecond
	stallLimit = 10 * time.Second
	// memoryOffered is what the sender would send if nothing stopped it.
	memoryOffered = 256 << 20
)

// memoryTestConfig: the default windows and chunk size, the compressor forced to run
// on any input, and a budget that admits every stream at once, so that each stream's
// reservation can be checked against what the server holds for it.
const memoryTestConfig = `
memory: {budget: 1GiB}
pipelines:
  gzip-all: [{gzip: {level: 1, preview_bytes: 0}}]
  gated: [test-gate]
routes:
  - {name: identity, request: identity, response: identity}
  - {name: gzip-all, request: gzip-all, response: identity}
  - {name: gated, request: gated, response: identity}
`

// clientWindow is the receive window of the test's Envoy: fixed, as in an Envoy
// cluster with initial_stream_window_size set, so that what it takes in without
// reading is bounded and counted.
const clientWindow = 64 << 10

// grpcSendBuffers is the heap the messages in grpc-go's send path can pin: bodystream's
// codec marshals each into a pooled buffer of one chunk plus framing; two sit in the
// transport (write quota plus one), and a third is marshalled and waiting for quota
// inside the blocked Send.
const grpcSendBuffers = 3 * (64<<10 + messageOverhead)

func serveMemoryTest(t *testing.T) (*Server, *loopback) {
	t.Helper()
	return serveBodystream(t, memoryTestConfig, nil,
		grpc.WithStaticStreamWindowSize(clientWindow),
		grpc.WithStaticConnWindowSize(clientWindow))
}

// randomChunks yields total bytes of fresh ChaCha8 output in chunks of size, generated
// as they go into one reused buffer: the body is never in memory. The yielded slice is
// valid until the next.
func randomChunks(total int64, size int, seed byte) iter.Seq[[]byte] {
	return func(yield func([]byte) bool) {
		r := rand.NewChaCha8([32]byte{seed})
		buf := make([]byte, size)
		for total > 0 {
			c := buf[:min(int64(size), total)]
			r.Read(c)
			total -= int64(len(c))
			if !yield(c) {
				return
			}
		}
	}
}

// hashing passes chunks on and adds them to h.
func hashing(chunks iter.Seq[[]byte], h hash.Hash) iter.Seq[[]byte] {
	return func(yield func([]byte) bool) {
		for c := range chunks {
			h.Write(c)
			if !yield(c) {
				return
			}
		}
	}
}

// readFirst is what TestSlowReceiverBoundsServerHeap's receiver reads before it stops.
const readFirst = 16 << 20

// receiveUpTo reads the headers response and body responses until it has n body
// bytes or the body ended, then stops reading and returns the count.
func (e *envoyBody) receiveUpTo(n int64) (int64, error) {
	resp := new(extprocv3.ProcessingResponse)
	if err := e.s.RecvMsg(resp); err != nil || resp.GetRequestHeaders() == nil {
		return 0, fmt.Errorf("want the request headers response, got %v (%v)", resp, err)
	}
	var got int64
	for got < n {
		if err := e.s.RecvMsg(resp); err != nil {
			return got, err
		}
		sr := resp.GetRequestBody().GetResponse().GetBodyMutation().GetStreamedResponse()
		if sr == nil {
			return got, fmt.Errorf("want a streamed body response, got %v", resp)
		}
		got += int64(len(sr.GetBody()))
		if sr.GetEndOfStream() {
			break
		}
	}
	return got, nil
}

// waitStalled polls counter until it has not changed for quiet and returns its value,
// or reports false if it kept moving for limit.
func waitStalled(counter func() int64, quiet, limit time.Duration) (int64, bool) {
	deadline := time.Now().Add(limit)
	last, since := counter(), time.Now()
	for time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
		if v := counter(); v != last {
			last, since = v, time.Now()
			continue
		}
		if time.Since(since) >= quiet {
			return last, true
		}
	}
	return last, false
}

// heapInUse is the heap in use after two full collections: the first moves what
// sync.Pools hold idle to their victim caches, the second frees it, so that what
// remains is what something still uses.
func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// serverHolds is what the server itself holds for one stream whose receiver stopped
// reading, from the configuration: the unread bytes its fixed stream window admits,
// the request message its receive loop is handling, the chunker's pending message,
// the send queue, the message in Send and grpc-go's write quota behind it.
func serverHolds(srv *Server) int64 {
	o := srv.opts
	chunk := int64(o.ChunkSize)
	queue := int64(cap(newStream(context.Background(), srv, nil).queue))
	return int64(o.StreamWindow) + benchMessageSize + chunk + queue*chunk + chunk + grpcWriteQuota
}

func TestSlowReceiverBoundsServerHeap(t *testing.T) {
	cases := []struct {
		route string
		// stageHolds is what the pipeline's stages hold between the receive loop and
		// the chunker: gzip's copy buffer and the deflate block it is compressing.
		stageHolds int64
		// codecState is the codec's own state (gzip level 1: about 800 KiB).
		codecState int64
	}{
		{"identity", 0, 0},
		{"gzip-all", 256 << 10, 1 << 20},
	}
	for _, tc := range cases {
		t.Run(tc.route, func(t *testing.T) {
			srv, lb := serveMemoryTest(t)
			// Warm up: connection buffers, pools and codec state exist before the baseline.
			if err := roundTrip(t.Context(), lb.conn, tc.route, randomChunks(1<<20, benchMessageSize, 1), func([]byte) {}); err != nil {
				t.Fatal(err)
			}
			before := heapInUse()

			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			e, err := openEnvoyBody(ctx, lb.conn, tc.route)
			if err != nil {
				t.Fatal(err)
			}
			// The sender pushes a large body, generated as it goes. The receiver reads
			// the first readFirst bytes at full speed, so that the transfer is in full
			// flow (grpc-go's automatic windows, were they on, would have grown), then
			// stops reading for good.
			sendDone := make(chan error, 1)
			go func() { sendDone <- e.send(randomChunks(memoryOffered, benchMessageSize, 2)) }()
			defer func() {
				cancel()
				<-sendDone
			}()
			received, err := e.receiveUpTo(readFirst)
			if err != nil {
				t.Fatal(err)
			}

			sent, stalled := waitStalled(e.sent.Load, stallQuiet, stallLimit)
			select {
			case err := <-sendDone:
				sendDone <- err // for the deferred wait
				t.Fatalf("the sender stopped on its own after %d bytes: %v", sent, err)
			default:
			}
			if !stalled {
				t.Fatalf("the sender never blocked: still sending after %v, %d bytes", stallLimit, sent)
			}
			inFlight := sent - received

			// What the server can hold for the stream is counted in the budget: this
			// stream's reservation is all that is in use.
			holds := serverHolds(srv) + tc.stageHolds
			if reserved := int64(testutil.ToFloat64(srv.metrics.budgetInUse)); reserved < holds {
				t.Errorf("the stream reserved %d KiB of the budget, less than the %d KiB the server can hold for it", reserved>>10, holds>>10)
			}

			// Everything that can hold the body between the sender and the receiver
			// that does not read: the test client's send side (write quota plus the
			// message it was sending), the server, its stages, the test client's
			// fixed receive window. The stages' output here is as large as their
			// input (random data does not compress; gzip stores it with a few bytes
			// of framing per 64 KiB), so the bytes received stand for as many sent.
			bound := grpcWriteQuota + benchMessageSize + serverHolds(srv) + tc.stageHolds + clientWindow
			t.Logf("sender blocked %d KiB past what the receiver read (%d MiB, then it stopped) of %d MiB offered; bound from the configuration %d KiB",
				inFlight>>10, received>>20, memoryOffered>>20, bound>>10)
			if inFlight > 2*bound {
				t.Errorf("the sender got %d bytes past the receiver, more than twice the %d bytes the windows, queue, pipes and chunk can hold", inFlight, bound)
			}

			// The heap holds no more than those bytes, the buffers they sit in and the
			// stream's state (codec, grpc-go's send buffers): a few MiB, against the
			// 256 MiB the sender offered. It stays there while the sender keeps
			// trying: measured now and once more after another quiet interval, and
			// the sender is still within its bound then (a sender that was only slow
			// when first seen still in flight would show here).
			limit := 2*bound + grpcSendBuffers + tc.codecState + 1<<20
			for i := range 2 {
				if i > 0 {
					time.Sleep(stallQuiet)
				}
				after := heapInUse()
				grown := int64(after) - int64(before)
				t.Logf("heap in use grew by %d KiB while the sender was blocked (%d → %d KiB); limit %d KiB", grown>>10, before>>10, after>>10, limit>>10)
				if grown > limit {
					t.Errorf("heap in use grew by %d bytes, more than %d", grown, limit)
				}
			}
			if now := e.sent.Load() - received; now > 2*bound {
				t.Errorf("the sender moved on to %d bytes past the receiver, more than twice the bound of %d", now, bound)
			}
		})
	}
}

// testGate is a stage for TestSlowStageStopsRecv: it takes no input until the gate
// opens, then copies its input to its output.
type testGate struct{}

var (
	gateMu   sync.Mutex
	gateOpen = make(chan struct{})
)

// closeGate makes the test-gate stages planned from now on wait; openGate lets them run.
func closeGate() {
	gateMu.Lock()
	defer gateMu.Unlock()
	gateOpen = make(chan struct{})
}

func openGate() {
	gateMu.Lock()
	defer gateMu.Unlock()
	select {
	case <-gateOpen:
	default:
		close(gateOpen)
	}
}

func init() {
	stage.Register(stage.Kind{Name: "test-gate", Build: func(func(any) error) (stage.Spec, error) { return testGate{}, nil }})
}

func (testGate) Name() string                   { return "test-gate" }
func (testGate) PreviewSize(*stage.Message) int { return 0 }
func (testGate) Plan(*stage.Message, []byte) (stage.Step, error) {
	gateMu.Lock()
	open := gateOpen
	gateMu.Unlock()
	return stage.Step{Transformer: stage.TransformFunc(func(dst io.Writer, src io.Reader) error {
		<-open
		_, err := io.Copy(dst, src)
		return err
	})}, nil
}

func TestSlowStageStopsRecv(t *testing.T) {
	closeGate()
	t.Cleanup(openGate) // a failed test must not leave a stage waiting
	srv, lb := serveMemoryTest(t)

	const total = 8 << 20
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	e, err := openEnvoyBody(ctx, lb.conn, "gated")
	if err != nil {
		t.Fatal(err)
	}
	sentHash, gotHash := sha256.New(), sha256.New()
	var received int64
	var wg sync.WaitGroup
	var sendErr, recvErr error
	wg.Go(func() { sendErr = e.send(hashing(randomChunks(total, benchMessageSize, 3), sentHash)) })
	wg.Go(func() {
		recvErr = e.receive(func(c []byte) {
			gotHash.Write(c)
			received += int64(len(c))
		})
	})
	stopped := false
	defer func() {
		if !stopped {
			cancel()
			openGate()
			wg.Wait()
		}
	}()

	sent, stalled := waitStalled(e.sent.Load, stallQuiet, stallLimit)
	if !stalled {
		t.Fatalf("the sender never blocked behind the closed stage: still sending after %v, %d bytes", stallLimit, sent)
	}
	// The stage reads nothing, so the receive loop blocks in the pipeline's first
	// pipe with one message, and the server reads no more: what the sender got
	// through is its own write quota and message, the server's stream window and
	// that one message.
	bound := int64(grpcWriteQuota + benchMessageSize + int64(srv.opts.StreamWindow) + benchMessageSize)
	t.Logf("sender blocked after %d KiB of %d MiB behind the closed stage; bound from the configuration %d KiB", sent>>10, total>>20, bound>>10)
	if sent >= total {
		t.Fatal("the whole body went through a closed stage")
	}
	if sent > 2*bound {
		t.Errorf("the sender got %d bytes through, more than twice the %d bytes the server's window and receive loop can hold", sent, bound)
	}

	openGate()
	wg.Wait()
	stopped = true
	if sendErr != nil || recvErr != nil {
		t.Fatalf("after the gate opened: send %v, receive %v", sendErr, recvErr)
	}
	if err := e.finish(); err != nil {
		t.Fatal(err)
	}
	if received != total || !bytes.Equal(gotHash.Sum(nil), sentHash.Sum(nil)) {
		t.Fatalf("received %d bytes (sha256 %x), sent %d (sha256 %x)", received, gotHash.Sum(nil), total, sentHash.Sum(nil))
	}
}
