package server

import (
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"math/rand/v2"
	"net"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	filterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/experimental"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/test/bufconn"
)

// testConfig has one route per pipeline the tests need; gzip without a preview so that
// header responses come at once, and "gzip-preview" with the default preview.
const testConfig = `
chunk_size: 4KiB
flush_delay: 0s
pipelines:
  gzip-now: [{gzip: {level: 1, preview_bytes: 0}}]
  gzip-preview: [gzip]
routes:
  - {name: identity, request: identity, response: identity}
  - {name: gzip, request: gzip-now, response: gzip-now}
  - {name: gzip-preview, request: gzip-preview, response: identity}
  - {name: by-path, path_prefix: /zip, request: gzip-now, response: identity}
`

// testServer serves bodystream over an in-memory connection.
type testServer struct {
	t    *testing.T
	srv  *Server
	conn *grpc.ClientConn
	pool *messagePool // the server's codec and transport pool, poisoning
}

// newTestServer serves bodystream's configuration yamlText over an in-memory
// connection. Its buffer pool poisons every buffer put back (messagePool.poison): received bodies
// are views into receive buffers (recv.go), and a body read after its message was
// freed would corrupt the output every test here checks byte for byte.
func newTestServer(t *testing.T, yamlText string) *testServer {
	t.Helper()
	srv, _ := newServer(t, yamlText)
	return serveTest(t, srv)
}

// serveTest serves srv over an in-memory connection until the test ends, with extra
// server options after bodystream's own.
func serveTest(t *testing.T, srv *Server, extra ...grpc.ServerOption) *testServer {
	t.Helper()
	listener := bufconn.Listen(1 << 20)
	pool := newMessagePool(srv.opts.ChunkSize)
	pool.poison = true
	opts := append(srv.GRPCServerOptions(), grpc.ForceServerCodecV2(newCodec(pool)), experimental.BufferPool(pool))
	g := grpc.NewServer(append(opts, extra...)...)
	srv.Register(g)
	served := make(chan struct{})
	go func() {
		defer close(served)
		g.Serve(listener)
	}()
	conn, err := grpc.NewClient("passthrough:///bufconn",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return listener.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Close()
		g.Stop()
		<-served
	})
	return &testServer{t: t, srv: srv, conn: conn, pool: pool}
}

// open starts one ext_proc stream as Envoy would, naming the route in the metadata.
func (ts *testServer) open(route string) *envoyStream {
	ts.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ts.t.Cleanup(cancel)
	if route != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, routeMetadataKey, route)
	}
	s, err := extprocv3.NewExternalProcessorClient(ts.conn).Process(ctx)
	if err != nil {
		ts.t.Fatal(err)
	}
	return &envoyStream{t: ts.t, s: s, cancel: cancel}
}

// envoyStream plays Envoy's side of one stream.
type envoyStream struct {
	t      *testing.T
	s      extprocv3.ExternalProcessor_ProcessClient
	cancel context.CancelFunc
	first  bool
}

type modes struct {
	request, response filterv3.ProcessingMode_BodySendMode
}

// sendBodyConcurrently sends chunks as request body messages, the last with
// end_of_stream, from a goroutine, as Envoy sends while it receives; the channel
// says how the sending ended. When t ends, the stream is cancelled, which ends a
// Send still blocked, and the goroutine is waited for.
func sendBodyConcurrently(t *testing.T, e *envoyStream, chunks [][]byte) <-chan error {
	sent := make(chan error, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i, c := range chunks {
			if err := e.s.Send(requestBody(c, i == len(chunks)-1)); err != nil {
				sent <- err
				return
			}
		}
		sent <- nil
	}()
	t.Cleanup(func() {
		e.cancel()
		<-done
	})
	return sent
}

func (e *envoyStream) send(req *extprocv3.ProcessingRequest) {
	e.t.Helper()
	if err := e.s.Send(req); err != nil {
		e.t.Fatalf("send: %v", err)
	}
}

// protocolConfig marks the stream's first message as Envoy does.
func (e *envoyStream) withConfig(req *extprocv3.ProcessingRequest, m modes) *extprocv3.ProcessingRequest {
	if !e.first {
		e.first = true
		req.ProtocolConfig = &extprocv3.ProtocolConfiguration{RequestBodyMode: m.request, ResponseBodyMode: m.response}
	}
	return req
}

func headers(kv ...string) *corev3.HeaderMap {
	hm := &corev3.HeaderMap{}
	for i := 0; i+1 < len(kv); i += 2 {
		hm.Headers = append(hm.Headers, &corev3.HeaderValue{Key: kv[i], RawValue: []byte(kv[i+1])})
	}
	return hm
}

func requestHeaders(eos bool, kv ...string) *extprocv3.ProcessingRequest {
	return &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestHeaders{
		RequestHeaders: &extprocv3.HttpHeaders{Headers: headers(kv...), EndOfStream: eos}}}
}

func responseHeaders(eos bool, kv ...string) *extprocv3.ProcessingRequest {
	return &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseHeaders{
		ResponseHeaders: &extprocv3.HttpHeaders{Headers: headers(kv...), EndOfStream: eos}}}
}

func requestBody(b []byte, eos bool) *extprocv3.ProcessingRequest {
	return &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestBody{
		RequestBody: &extprocv3.HttpBody{Body: b, EndOfStream: eos}}}
}

func responseBody(b []byte, eos bool) *extprocv3.ProcessingRequest {
	return &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseBody{
		ResponseBody: &extprocv3.HttpBody{Body: b, EndOfStream: eos}}}
}

func requestTrailers(kv ...string) *extprocv3.ProcessingRequest {
	return &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestTrailers{
		RequestTrailers: &extprocv3.HttpTrailers{Trailers: headers(kv...)}}}
}

func (e *envoyStream) recv() *extprocv3.ProcessingResponse {
	e.t.Helper()
	resp, err := e.s.Recv()
	if err != nil {
		e.t.Fatalf("recv: %v", err)
	}
	return resp
}

// recvErr reads until the stream ends and returns how it ended.
func (e *envoyStream) recvErr() error {
	for {
		if _, err := e.s.Recv(); err != nil {
			return err
		}
	}
}

// streamedBodies reads FULL_DUPLEX body responses until one has end_of_stream and
// returns their concatenation, checking each against the size bound.
func (e *envoyStream) streamedBodies(maxMessage int) []byte {
	e.t.Helper()
	var out bytes.Buffer
	for {
		resp := e.recv()
		body := resp.GetRequestBody().GetResponse().GetBodyMutation().GetStreamedResponse()
		if body == nil {
			body = resp.GetResponseBody().GetResponse().GetBodyMutation().GetStreamedResponse()
		}
		if body == nil {
			e.t.Fatalf("expected a streamed body response, got %v", resp)
		}
		if len(body.GetBody()) > maxMessage {
			e.t.Fatalf("body message of %d bytes exceeds %d", len(body.GetBody()), maxMessage)
		}
		out.Write(body.GetBody())
		if body.GetEndOfStream() {
			return out.Bytes()
		}
	}
}

func gunzip(t *testing.T, b []byte) []byte {
	t.Helper()
	r, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("gunzip: %v", err)
	}
	out, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("gunzip: %v", err)
	}
	return out
}

// mutationOf returns the header mutation of a headers response of either direction.
func mutationOf(resp *extprocv3.ProcessingResponse) *extprocv3.HeaderMutation {
	if h := resp.GetRequestHeaders(); h != nil {
		return h.GetResponse().GetHeaderMutation()
	}
	return resp.GetResponseHeaders().GetResponse().GetHeaderMutation()
}

func setValue(m *extprocv3.HeaderMutation, key string) (string, bool) {
	for _, h := range m.GetSetHeaders() {
		if h.GetHeader().GetKey() == key {
			return string(h.GetHeader().GetRawValue()), true
		}
	}
	return "", false
}

func removes(m *extprocv3.HeaderMutation, key string) bool {
	for _, k := range m.GetRemoveHeaders() {
		if k == key {
			return true
		}
	}
	return false
}

// text returns n bytes of compressible text.
func text(n int) []byte {
	line := []byte(`{"id": 12345, "name": "bodystream", "tags": ["a", "b"], "ok": true}` + "\n")
	return bytes.Repeat(line, n/len(line)+1)[:n]
}

func randomBytes(n int, seed byte) []byte {
	b := make([]byte, n)
	rand.NewChaCha8([32]byte{seed}).Read(b)
	return b
}

func split(b []byte, size int) [][]byte {
	var chunks [][]byte
	for len(b) > size {
		chunks = append(chunks, b[:size])
		b = b[size:]
	}
	return append(chunks, b)
}
