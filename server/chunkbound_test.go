package server

import (
	"bytes"
	"context"
	"fmt"
	"testing"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"
)

// newProcessClient opens a stream with call options, such as Envoy's receive limit.
func newProcessClient(ctx context.Context, ts *testServer, opts ...grpc.CallOption) (extprocv3.ExternalProcessor_ProcessClient, error) {
	return extprocv3.NewExternalProcessorClient(ts.conn).Process(ctx, opts...)
}

// TestBodyPayloadFitsChunkSize: for every chunk size config accepts that sits near a
// varint boundary of the framing, a full payload in every shape of cut-body message
// marshals to at most chunk_size bytes, and the bound leaves at most a few bytes unused.
func TestBodyPayloadFitsChunkSize(t *testing.T) {
	var sizes []int
	for _, edge := range []int{1 << 10, 1 << 14, 64 << 10, 1 << 21, 4 << 20} {
		for d := -40; d <= 40; d++ {
			if n := edge + d; n >= 1<<10 && n <= 4<<20 {
				sizes = append(sizes, n)
			}
		}
	}
	zeros := make([]byte, 4<<20)
	for _, size := range sizes {
		payload := bodyPayload(size)
		if payload < size-32 {
			t.Errorf("chunk_size %d: payload %d, framing of %d bytes is more than protobuf needs", size, payload, size-payload)
		}
		for _, resp := range cutBodyMessages(zeros[:payload]) {
			if n := proto.Size(resp); n > size {
				t.Fatalf("chunk_size %d: %T of payload %d marshals to %d bytes", size, resp.GetResponse(), payload, n)
			}
		}
		// Near a varint boundary the bound may leave a byte or two per length
		// unused, never more.
		worst := 0
		for _, resp := range cutBodyMessages(zeros[:payload]) {
			worst = max(worst, proto.Size(resp))
		}
		if worst < size-5 {
			t.Errorf("chunk_size %d: the largest message of payload %d is %d bytes; the bound is loose", size, payload, worst)
		}
	}
}

// TestMessagesFitEnvoysReceiveLimit plays Envoy with max_receive_message_length equal
// to chunk_size: every message bodystream sends in FULL_DUPLEX_STREAMED, with body
// chunks, with gzip growing incompressible input, and with the hash's metadata on
// the last message, arrives under the limit (grpc-go's client refuses a larger one
// with ResourceExhausted, as Envoy does), and the bodies come back whole.
func TestMessagesFitEnvoysReceiveLimit(t *testing.T) {
	random := randomBytes(300<<10, 7)
	for _, chunkSize := range []string{"1KiB", "4KiB", "64KiB"} {
		ts := newTestServer(t, fmt.Sprintf(`
chunk_size: %s
flush_delay: 0s
pipelines:
  gzip-now: [{gzip: {level: 1, preview_bytes: 0}}]
  hashed: [{hash: {algorithms: [sha256, sha512, sha1, md5]}}, {gzip: {level: 1, preview_bytes: 0}}]
routes:
  - {name: identity, request: identity, response: identity}
  - {name: gzip, request: gzip-now, response: gzip-now}
  - {name: hashed, request: hashed, response: hashed}
`, chunkSize))
		limit := ts.srv.opts.ChunkSize
		for _, route := range []string{"identity", "gzip", "hashed"} {
			for _, body := range [][]byte{random, text(300 << 10), []byte("x")} {
				t.Run(fmt.Sprintf("%s/%s/%dB", chunkSize, route, len(body)), func(t *testing.T) {
					ctx, cancel := context.WithCancel(metadata.AppendToOutgoingContext(context.Background(), routeMetadataKey, route))
					defer cancel()
					s, err := newProcessClient(ctx, ts, grpc.MaxCallRecvMsgSize(limit))
					if err != nil {
						t.Fatal(err)
					}
					e := &envoyStream{t: t, s: s, cancel: cancel}
					e.send(e.withConfig(requestHeaders(false, ":path", "/up", "content-type", "application/json"), fullDuplex))
					// Envoy's chunks are its own size; the bound is on what comes back.
					// Envoy sends while it receives: a body larger than the windows
					// would otherwise wait on its own unread output.
					sent := sendBodyConcurrently(t, e, split(body, 16<<10))
					hr := e.recv()
					if hr.GetRequestHeaders() == nil {
						t.Fatalf("first response is %v, want the request headers response", hr)
					}
					got := e.streamedBodies(bodyPayload(limit))
					if route != "identity" {
						got = gunzip(t, got)
					}
					if !bytes.Equal(got, body) {
						t.Fatalf("body differs: got %d bytes, want %d", len(got), len(body))
					}
					if err := <-sent; err != nil {
						t.Fatalf("send: %v", err)
					}
				})
			}
		}
	}
}

// TestChunkerBuffersHoldThePayload: the server's chunker pool, the one place that
// caps a cut message, hands out buffers of the payload bound, not of chunk_size.
func TestChunkerBuffersHoldThePayload(t *testing.T) {
	srv, _ := newServer(t, testConfig)
	if got, want := cap(srv.pool.Get()), bodyPayload(srv.opts.ChunkSize); got != want {
		t.Fatalf("chunker buffers of %d bytes, want %d (chunk_size %d less framing)", got, want, srv.opts.ChunkSize)
	}
}
