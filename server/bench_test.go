package server

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"math/rand/v2"
	"net"
	"net/textproto"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"github.com/klauspost/compress/zstd"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/experimental"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	"github.com/bodystream/bodystream/stage"
)

// Throughput benchmarks. Each drives the real server over loopback TCP the
// way Envoy does in FULL_DUPLEX_STREAMED: one goroutine sends 64 KiB request-body
// messages, another reads the streamed responses. Beside each pipeline run the two
// ceilings it is compared with: the raw codec alone on the same data
// (BenchmarkCodec) and a bare gRPC bidi echo of the same messages (BenchmarkGRPCEcho).
//
// Every benchmark reports, besides Go's MB/s (wall clock), MB/cpu-s: the bytes moved
// per CPU-second of the whole process (server, in-process client and GC together; from
// getrusage). On a machine with more than one core the wall-clock figure can exceed
// the per-core one, because the client, the receive loop, the pipeline stage and the
// send loop run in parallel.

const (
	// benchDataSize is the body of one iteration: large enough that stream set-up is
	// noise, small enough to keep in memory and reuse.
	benchDataSize = 8 << 20
	// benchMessageSize is the size of Envoy's request-body messages.
	benchMessageSize = 64 << 10
)

// benchConfig names one route per benchmarked pipeline. The compressors get
// preview_bytes: 0 so that they compress every input, incompressible too: that is
// their worst case, and what the codec-alone benchmark measures. (With the default
// preview they skip random-looking bodies, which then run at identity speed.)
// The memory budget is off so that admission control never refuses a benchmark stream.
const benchConfig = `
memory: {budget: 0}
pipelines:
  gzip1: [{gzip: {level: 1, preview_bytes: 0}}]
  zstd-fastest: [{zstd: {level: fastest, preview_bytes: 0}}]
  gunzip-sha256-zstd: [{decompress: {encoding: gzip}}, hash, {zstd: {level: fastest, preview_bytes: 0}}]
routes:
  - {name: identity, request: identity, response: identity}
  - {name: gzip1, request: gzip1, response: identity}
  - {name: zstd-fastest, request: zstd-fastest, response: identity}
  - {name: gunzip-sha256-zstd, request: gunzip-sha256-zstd, response: identity}
`

// benchPipeline is one benchmarked pipeline: its route, whether its input is the gzip
// of the data, and how to turn its output back into the data.
type benchPipeline struct {
	name      string
	gzipInput bool
	decode    func([]byte) ([]byte, error)
}

var benchPipelines = []benchPipeline{
	{name: "identity", decode: func(b []byte) ([]byte, error) { return b, nil }},
	{name: "gzip1", decode: gunzipBytes},
	{name: "zstd-fastest", decode: unzstdBytes},
	{name: "gunzip-sha256-zstd", gzipInput: true, decode: unzstdBytes},
}

var benchInputNames = []string{"incompressible", "json", "mixed"}

// benchInputs are generated once per process, deterministically.
var benchInputs = sync.OnceValue(func() map[string][]byte {
	random := incompressible(benchDataSize, 1)
	json := jsonLines(benchDataSize, 1)
	mixed := make([]byte, 0, benchDataSize)
	for off := 0; off < benchDataSize; off += benchMessageSize {
		src := random
		if off/benchMessageSize%2 == 1 {
			src = json
		}
		mixed = append(mixed, src[off:min(off+benchMessageSize, benchDataSize)]...)
	}
	return map[string][]byte{"incompressible": random, "json": json, "mixed": mixed}
})

// gzippedInputs is the gzip (default level, as a client would send it) of each input.
var gzippedInputs = sync.OnceValue(func() map[string][]byte {
	out := map[string][]byte{}
	for name, data := range benchInputs() {
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		zw.Write(data)
		zw.Close()
		out[name] = buf.Bytes()
	}
	return out
})

// incompressible returns n bytes of ChaCha8 output, like encrypted or compressed media.
func incompressible(n int, seed byte) []byte {
	b := make([]byte, n)
	rand.NewChaCha8([32]byte{seed}).Read(b)
	return b
}

var (
	jsonWords     = strings.Fields("alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar papa quebec romeo sierra tango uniform victor whiskey xray yankee zulu upload stream video segment manifest cache origin edge client server")
	jsonEvents    = strings.Fields("view click purchase signup logout upload download error")
	jsonCountries = strings.Fields("DE FR US JP BR IN NG CA AU SE")
)

// jsonLines returns n bytes of JSON lines with enough variety (random names, numbers,
// timestamps and words) to compress about 5× with gzip level 1, like real logs or API
// payloads, rather than the 100× of one repeated line.
func jsonLines(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	word := func(b []byte, list []string, k int) []byte { return append(b, list[r.IntN(k)]...) }
	b := make([]byte, 0, n+512)
	for line := int64(1 << 32); len(b) < n; line++ {
		b = append(b, `{"ts":"2026-10-`...)
		b = strconv.AppendInt(b, int64(1+r.IntN(28)), 10)
		b = append(b, 'T')
		b = strconv.AppendInt(b, int64(r.IntN(24)), 10)
		b = append(b, ':')
		b = strconv.AppendInt(b, int64(r.IntN(60)), 10)
		b = append(b, ':')
		b = strconv.AppendInt(b, int64(r.IntN(60)), 10)
		b = append(b, `Z","id":"`...)
		b = strconv.AppendInt(b, line, 16)
		b = append(b, `","user":{"name":"`...)
		b = word(b, jsonWords, len(jsonWords))
		b = append(b, ' ')
		b = word(b, jsonWords, len(jsonWords))
		b = append(b, `","age":`...)
		b = strconv.AppendInt(b, int64(18+r.IntN(60)), 10)
		b = append(b, `,"country":"`...)
		b = word(b, jsonCountries, len(jsonCountries))
		b = append(b, `"},"event":"`...)
		b = word(b, jsonEvents, len(jsonEvents))
		b = append(b, `","value":`...)
		b = strconv.AppendFloat(b, float64(r.IntN(10000))/4, 'f', 2, 64)
		b = append(b, `,"tags":["`...)
		b = word(b, jsonWords, len(jsonWords))
		b = append(b, `","`...)
		b = word(b, jsonWords, len(jsonWords))
		b = append(b, `"],"msg":"`...)
		for i := range 3 + r.IntN(4) {
			if i > 0 {
				b = append(b, ' ')
			}
			b = word(b, jsonWords, 8)
		}
		b = append(b, "\"}\n"...)
	}
	return b[:n]
}

func gunzipBytes(b []byte) ([]byte, error) {
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	return io.ReadAll(zr)
}

func unzstdBytes(b []byte) ([]byte, error) {
	zr, err := zstd.NewReader(bytes.NewReader(b), zstd.WithDecoderConcurrency(1))
	if err != nil {
		return nil, err
	}
	defer zr.Close()
	return io.ReadAll(zr)
}

// chunksOf yields b in messages of size bytes, without copying.
func chunksOf(b []byte, size int) iter.Seq[[]byte] {
	return func(yield func([]byte) bool) {
		for len(b) > 0 {
			n := min(size, len(b))
			if !yield(b[:n]) {
				return
			}
			b = b[n:]
		}
	}
}

// --- A real gRPC server on loopback TCP, and a client that plays Envoy.

// loopback serves a gRPC server on 127.0.0.1 and dials it over TCP.
type loopback struct {
	addr string
	conn *grpc.ClientConn
	stop func()
}

// envoyDialOptions make the in-process client, which stands in for Envoy (C++, with
// costs of its own that are not bodystream's), cheap: bodystream's codec and pool
// rather than grpc-go's default, which clears 1 MiB for every 64 KiB message it
// marshals or reassembles. Every benchmark and both ceilings use the same client.
func envoyDialOptions() []grpc.DialOption {
	pool := newMessagePool(benchMessageSize)
	return []grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.ForceCodecV2(newCodec(pool))),
		experimental.WithBufferPool(pool),
	}
}

// serveLoopback starts a gRPC server with opts on 127.0.0.1:0, lets register add its
// services, and dials it like Envoy (envoyDialOptions, then dial). stop closes the
// client and stops the server.
func serveLoopback(tb testing.TB, register func(*grpc.Server), opts []grpc.ServerOption, dial ...grpc.DialOption) *loopback {
	tb.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	g := grpc.NewServer(opts...)
	register(g)
	served := make(chan struct{})
	go func() {
		defer close(served)
		g.Serve(lis)
	}()
	dial = append(envoyDialOptions(), dial...)
	conn, err := grpc.NewClient(lis.Addr().String(), dial...)
	if err != nil {
		g.Stop()
		<-served
		tb.Fatal(err)
	}
	lb := &loopback{addr: lis.Addr().String(), conn: conn}
	lb.stop = sync.OnceFunc(func() {
		conn.Close()
		g.Stop()
		<-served
	})
	tb.Cleanup(lb.stop)
	return lb
}

// serveBodystream runs bodystream with its own gRPC options, then extra, on loopback TCP.
func serveBodystream(tb testing.TB, yamlText string, extra []grpc.ServerOption, dial ...grpc.DialOption) (*Server, *loopback) {
	tb.Helper()
	srv, _ := newServer(tb, yamlText)
	opts := append(srv.GRPCServerOptions(), extra...)
	return srv, serveLoopback(tb, srv.Register, opts, dial...)
}

// envoyBody plays Envoy for the request body of one FULL_DUPLEX_STREAMED stream.
type envoyBody struct {
	s extprocv3.ExternalProcessor_ProcessClient
	// sent counts the body bytes Send has accepted, for tests that watch progress.
	sent atomic.Int64
}

// openEnvoyBody opens one ext_proc stream naming route in the metadata, as an
// envoy.yaml route with grpc_initial_metadata does.
func openEnvoyBody(ctx context.Context, conn *grpc.ClientConn, route string) (*envoyBody, error) {
	ctx = metadata.AppendToOutgoingContext(ctx, routeMetadataKey, route)
	s, err := extprocv3.NewExternalProcessorClient(conn).Process(ctx)
	if err != nil {
		return nil, err
	}
	return &envoyBody{s: s}, nil
}

// send sends the request headers (with protocol_config) and the body chunks, then an
// empty end_of_stream message, as Envoy does when the body ends without data. One
// request message is reused: Send has serialised it when it returns.
func (e *envoyBody) send(chunks iter.Seq[[]byte]) error {
	first := requestHeaders(false, ":path", "/upload", ":method", "POST", "content-type", "application/octet-stream")
	first.ProtocolConfig = &extprocv3.ProtocolConfiguration{RequestBodyMode: modeFullDuplex, ResponseBodyMode: modeFullDuplex}
	if err := e.s.Send(first); err != nil {
		return fmt.Errorf("send headers: %w", err)
	}
	body := &extprocv3.HttpBody{}
	req := &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestBody{RequestBody: body}}
	for c := range chunks {
		body.Body = c
		if err := e.s.Send(req); err != nil {
			return fmt.Errorf("send body: %w", err)
		}
		e.sent.Add(int64(len(c)))
	}
	body.Body, body.EndOfStream = nil, true
	if err := e.s.Send(req); err != nil {
		return fmt.Errorf("send end of stream: %w", err)
	}
	return nil
}

// receive reads the headers response and then the streamed body responses until the
// one with end_of_stream, handing each body to sink (which must not keep it). One
// response message is reused.
func (e *envoyBody) receive(sink func([]byte)) error {
	resp := new(extprocv3.ProcessingResponse)
	if err := e.s.RecvMsg(resp); err != nil {
		return fmt.Errorf("receive headers response: %w", err)
	}
	if resp.GetRequestHeaders() == nil {
		return fmt.Errorf("first response is %v, want the request headers response", resp)
	}
	for {
		if err := e.s.RecvMsg(resp); err != nil {
			return fmt.Errorf("receive body: %w", err)
		}
		sr := resp.GetRequestBody().GetResponse().GetBodyMutation().GetStreamedResponse()
		if sr == nil {
			return fmt.Errorf("want a streamed body response, got %v", resp)
		}
		sink(sr.GetBody())
		if sr.GetEndOfStream() {
			return nil
		}
	}
}

// finish half-closes the stream and waits for the server to end it.
func (e *envoyBody) finish() error {
	if err := e.s.CloseSend(); err != nil {
		return err
	}
	if _, err := e.s.Recv(); !errors.Is(err, io.EOF) {
		return fmt.Errorf("stream ended with %v, want io.EOF", err)
	}
	return nil
}

// roundTrip sends one body through route, like Envoy: the send and the receive side
// in their own goroutines.
func roundTrip(ctx context.Context, conn *grpc.ClientConn, route string, chunks iter.Seq[[]byte], sink func([]byte)) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	e, err := openEnvoyBody(ctx, conn, route)
	if err != nil {
		return err
	}
	var g errgroup.Group
	g.Go(func() error { return e.send(chunks) })
	g.Go(func() error { return e.receive(sink) })
	if err := g.Wait(); err != nil {
		return err
	}
	return e.finish()
}

// cpuTime is the CPU time (user and system) the process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// measureCPU reports MB per CPU-second over the benchmark's b.N iterations of size
// bytes each. Call it right after b.ResetTimer and call the function it returns right
// after the loop.
func measureCPU(b *testing.B, size int) func() {
	start := cpuTime()
	return func() {
		if used := cpuTime() - start; used > 0 {
			b.ReportMetric(float64(size)*float64(b.N)/1e6/used.Seconds(), "MB/cpu-s")
		}
	}
}

// BenchmarkThroughput drives bodystream in FULL_DUPLEX_STREAMED over loopback TCP.
// MB/s counts the data; for gunzip-sha256-zstd that is the decompressed data (the
// wire carried its gzip), so that its rows compare with the others.
func BenchmarkThroughput(b *testing.B) {
	_, lb := serveBodystream(b, benchConfig, nil)
	for _, p := range benchPipelines {
		for _, input := range benchInputNames {
			b.Run("pipeline="+p.name+"/input="+input, func(b *testing.B) {
				benchPipelineRun(b, lb.conn, p, input)
			})
		}
	}
}

// benchPipelineRun checks once that pipeline p turns input into output that decodes
// back to it, then times b.N round trips.
func benchPipelineRun(b *testing.B, conn *grpc.ClientConn, p benchPipeline, input string) {
	data := benchInputs()[input]
	wire := data
	if p.gzipInput {
		wire = gzippedInputs()[input]
	}
	// Check the output once, untimed: a fast wrong pipeline measures nothing.
	var out bytes.Buffer
	if err := roundTrip(b.Context(), conn, p.name, chunksOf(wire, benchMessageSize), func(c []byte) { out.Write(c) }); err != nil {
		b.Fatal(err)
	}
	got, err := p.decode(out.Bytes())
	if err != nil || !bytes.Equal(got, data) {
		b.Fatalf("output does not decode to the input (err %v)", err)
	}

	var outBytes int64
	sink := func(c []byte) { outBytes += int64(len(c)) }
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	b.ResetTimer()
	done := measureCPU(b, len(data))
	for range b.N {
		if err := roundTrip(b.Context(), conn, p.name, chunksOf(wire, benchMessageSize), sink); err != nil {
			b.Fatal(err)
		}
	}
	done()
	b.StopTimer()
	// The compression ratio on the data, for reading the MB/s: a pipeline that
	// compresses sends fewer bytes back.
	b.ReportMetric(float64(len(data))*float64(b.N)/float64(outBytes), "ratio")
}

// BenchmarkServerCodec compares, on the server, grpc-go's default codec and buffer
// pool with bodystream's (codec.go): for the bare echo and two pipelines on JSON.
func BenchmarkServerCodec(b *testing.B) {
	srv, _ := newServer(b, benchConfig)
	for _, variant := range []string{"grpc-default", "bodystream"} {
		var extra []grpc.ServerOption
		if variant != "grpc-default" {
			extra = srv.codecOptions()
		}
		b.Run("codec="+variant, func(b *testing.B) {
			opts := append(srv.GRPCServerOptions(), extra...)
			echo := serveLoopback(b, func(g *grpc.Server) { extprocv3.RegisterExternalProcessorServer(g, echoServer{}) }, opts)
			b.Run("server=echo/input=json", func(b *testing.B) { benchEcho(b, echo.conn, "json") })
			_, lb := serveBodystream(b, benchConfig, extra)
			for _, p := range benchPipelines[:2] {
				b.Run("pipeline="+p.name+"/input=json", func(b *testing.B) { benchPipelineRun(b, lb.conn, p, "json") })
			}
		})
	}
}

// BenchmarkCodec runs each pipeline's stages alone on the same data, one after the
// other in one goroutine, with no gRPC, pipes or chunker: the same Spec → Plan →
// Stage.Transform the server runs, reading from a bytes.Reader and writing the last
// output to io.Discard. The reader is wrapped so that it hides WriterTo and stages read
// it in their own buffer sizes, as they read a pipe in the server. A multi-stage
// pipeline passes its intermediate output through a reused buffer. identity runs no
// stage and has no codec ceiling.
func BenchmarkCodec(b *testing.B) {
	for _, p := range benchPipelines {
		if p.name == "identity" {
			continue
		}
		pl := pipelineNamed(b, benchConfig, p.name)
		for _, input := range benchInputNames {
			b.Run("pipeline="+p.name+"/input="+input, func(b *testing.B) {
				data := benchInputs()[input]
				wire := data
				if p.gzipInput {
					wire = gzippedInputs()[input]
				}
				var bufs [2]bytes.Buffer
				var check bytes.Buffer
				if err := runCodecChain(pl.Steps, wire, &bufs, &check); err != nil {
					b.Fatal(err)
				}
				if got, err := p.decode(check.Bytes()); err != nil || !bytes.Equal(got, data) {
					b.Fatalf("codec output does not decode to the input (err %v)", err)
				}
				b.SetBytes(int64(len(data)))
				b.ReportAllocs()
				b.ResetTimer()
				done := measureCPU(b, len(data))
				for range b.N {
					if err := runCodecChain(pl.Steps, wire, &bufs, io.Discard); err != nil {
						b.Fatal(err)
					}
				}
				done()
			})
		}
	}
}

// runCodecChain plans steps for a message like the benchmark's and runs them in order
// over input, the last transform writing to out.
func runCodecChain(steps []stage.Spec, input []byte, bufs *[2]bytes.Buffer, out io.Writer) error {
	m := &stage.Message{Header: textproto.MIMEHeader{"Content-Type": {"application/octet-stream"}}}
	type planned struct {
		name string
		step stage.Step
	}
	var plan []planned
	lastTransform := -1
	for _, spec := range steps {
		step, err := spec.Plan(m, input[:min(len(input), spec.PreviewSize(m))])
		if err != nil {
			return err
		}
		if step.Transformer == nil && step.Observer == nil {
			continue
		}
		if step.Transformer != nil {
			lastTransform = len(plan)
		}
		if e := step.Edit; e.ContentEncoding != nil {
			if *e.ContentEncoding == "" {
				m.Header.Del("Content-Encoding")
			} else {
				m.Header.Set("Content-Encoding", *e.ContentEncoding)
			}
		}
		plan = append(plan, planned{spec.Name(), step})
	}
	cur := input
	for i, p := range plan {
		if o := p.step.Observer; o != nil {
			for c := range chunksOf(cur, benchMessageSize) {
				if _, err := o.Write(c); err != nil {
					o.Abort()
					return fmt.Errorf("%s: %w", p.name, err)
				}
			}
			if _, err := o.Finish(); err != nil {
				return fmt.Errorf("%s: %w", p.name, err)
			}
			continue
		}
		dst := out
		next := &bufs[i%2]
		if i != lastTransform {
			next.Reset()
			dst = next
		}
		if err := p.step.Transformer.Transform(dst, struct{ io.Reader }{bytes.NewReader(cur)}); err != nil {
			return fmt.Errorf("%s: %w", p.name, err)
		}
		cur = next.Bytes()
	}
	return nil
}

// echoServer is the bare gRPC ceiling: an ext_proc server that answers the headers
// and returns every body message as a streamed_response of the same bytes, from one
// goroutine, with no pipeline, chunker or send queue.
type echoServer struct {
	extprocv3.UnimplementedExternalProcessorServer
}

func (echoServer) Process(s extprocv3.ExternalProcessor_ProcessServer) error {
	req := new(extprocv3.ProcessingRequest)
	for {
		if err := s.RecvMsg(req); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		var resp *extprocv3.ProcessingResponse
		switch {
		case req.GetRequestHeaders() != nil:
			resp = headersResponse(stage.Request, nil)
		case req.GetRequestBody() != nil:
			body := req.GetRequestBody()
			resp = streamedBodyResponse(stage.Request, body.GetBody(), body.GetEndOfStream(), stage.Result{})
		default:
			return fmt.Errorf("echo: unexpected %T", req.GetRequest())
		}
		if err := s.Send(resp); err != nil {
			return err
		}
	}
}

// BenchmarkGRPCEcho measures the bare echo with bodystream's own gRPC server options
// (fixed windows, buffer sizes), the same client and the same 64 KiB messages. The
// content does not matter to gRPC; it runs per input only to line up with the table.
func BenchmarkGRPCEcho(b *testing.B) {
	srv, _ := newServer(b, benchConfig)
	opts := srv.GRPCServerOptions()
	lb := serveLoopback(b, func(g *grpc.Server) { extprocv3.RegisterExternalProcessorServer(g, echoServer{}) }, opts)
	for _, input := range benchInputNames {
		b.Run("input="+input, func(b *testing.B) { benchEcho(b, lb.conn, input) })
	}
}

func benchEcho(b *testing.B, conn *grpc.ClientConn, input string) {
	data := benchInputs()[input]
	var n int64
	sink := func(c []byte) { n += int64(len(c)) }
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	b.ResetTimer()
	done := measureCPU(b, len(data))
	for range b.N {
		if err := roundTrip(b.Context(), conn, "echo", chunksOf(data, benchMessageSize), sink); err != nil {
			b.Fatal(err)
		}
	}
	done()
	if n != int64(len(data))*int64(b.N) {
		b.Fatalf("echoed %d bytes, want %d", n, int64(len(data))*int64(b.N))
	}
}

// TestCodecRoundTrip checks codec.go's codec against protobuf's own: every kind of
// message bodystream sends and receives survives the trip, large bodies through the
// pool.
func TestCodecRoundTrip(t *testing.T) {
	c := newCodec(newMessagePool(64 << 10))
	result := stage.Result{Metadata: map[string]string{"request_sha256": "abc"}, Trailers: map[string]string{"x-digest": "abc"}}
	enc := "gzip"
	msgs := []proto.Message{
		headersResponse(stage.Request, headerMutation(stage.HeaderEdit{ContentEncoding: &enc, ChangesLength: true}, map[string]string{"x-a": "b"})),
		streamedBodyResponse(stage.Response, incompressible(64<<10, 9), false, stage.Result{}),
		streamedBodyResponse(stage.Request, nil, true, result),
		streamedBodyResponse(stage.Request, incompressible(3<<20, 9), false, stage.Result{}),
		bodyResponse(stage.Request, replaceBody(incompressible(100, 9)), nil, result),
		trailersResponse(stage.Response, result),
		requestHeaders(false, ":path", "/x", "content-type", "application/json"),
		requestBody(incompressible(64<<10, 9), true),
		requestBody(incompressible(5<<20, 9), false),
	}
	for _, m := range msgs {
		data, err := c.Marshal(m)
		if err != nil {
			t.Fatalf("%T: %v", m, err)
		}
		want := proto.Clone(m)
		proto.Reset(want)
		if err := proto.Unmarshal(data.Materialize(), want); err != nil {
			t.Fatalf("%T: protobuf cannot read the codec's bytes: %v", m, err)
		}
		if !proto.Equal(want, m) {
			t.Fatalf("%T: protobuf reads back %v, want %v", m, want, m)
		}
		got := proto.Clone(m)
		proto.Reset(got)
		if err := c.Unmarshal(data, got); err != nil {
			t.Fatalf("%T: %v", m, err)
		}
		data.Free()
		if !proto.Equal(got, m) {
			t.Fatalf("%T: the codec reads back %v, want %v", m, got, m)
		}
	}
}

func TestMessagePool(t *testing.T) {
	p := newMessagePool(64 << 10)
	for _, n := range []int{1, 4 << 10, 40 << 10, 64<<10 + 20, 68 << 10, 1 << 20, 4 << 20, 4<<20 + 1} {
		b := p.Get(n)
		if len(*b) != n {
			t.Fatalf("Get(%d) has length %d", n, len(*b))
		}
		if n == 64<<10+20 && cap(*b) != 64<<10+messageOverhead {
			t.Errorf("a 64 KiB chunk message gets a buffer of %d, want the chunk class %d", cap(*b), 64<<10+messageOverhead)
		}
		p.Put(b)
	}
	odd := make([]byte, 5000)
	p.Put(&odd) // no class of that size: dropped
	if b := p.Get(4500); cap(*b) == 5000 {
		t.Error("a buffer of no size class came back from the pool")
	}
}
