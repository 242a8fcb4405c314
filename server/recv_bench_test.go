package server

import (
	"context"
	"fmt"
	"iter"
	rtmetrics "runtime/metrics"
	"testing"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/encoding/protowire"
)

// BenchmarkReceive measures what receiving bodies costs the server: 8 MiB of JSON in
// 64 KiB FULL_DUPLEX_STREAMED messages through the identity and gzip1 pipelines. Its
// client allocates nothing per body byte: it marshals with the pooled codec and reads
// only the sizes and end_of_stream of the responses (leanClientCodec), so that the
// bytes allocated per body byte are the server's. CPU is the whole process's, the
// client's share included; the client does the same work whatever the server does.
//
//	go test -run '^$' -bench '^BenchmarkReceive$' -benchtime 20x -count 5 ./server/
func BenchmarkReceive(b *testing.B) {
	_, lb := serveBodystream(b, benchConfig, nil)
	data := benchInputs()["json"]
	lean := newLeanClientCodec()
	for _, route := range []string{"identity", "gzip1"} {
		b.Run("pipeline="+route+"/input=json", func(b *testing.B) {
			out, err := leanRoundTrip(b.Context(), lb.conn, lean, route, chunksOf(data, benchMessageSize))
			if err != nil {
				b.Fatal(err)
			}
			if route == "identity" && out != int64(len(data)) {
				b.Fatalf("identity returned %d bytes of %d", out, len(data))
			}
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			b.ResetTimer()
			start, allocStart := cpuTime(), totalAlloc()
			for range b.N {
				if _, err := leanRoundTrip(b.Context(), lb.conn, lean, route, chunksOf(data, benchMessageSize)); err != nil {
					b.Fatal(err)
				}
			}
			cpu, allocated := cpuTime()-start, totalAlloc()-allocStart
			b.StopTimer()
			body := float64(len(data)) * float64(b.N)
			b.ReportMetric(cpu.Seconds()/(body/(1<<30)), "cpu-s/GiB")
			b.ReportMetric(float64(allocated)/body, "alloc-B/body-B")
		})
	}
}

// leanRoundTrip sends one body through route as Envoy does in FULL_DUPLEX_STREAMED
// and returns how many body bytes came back.
func leanRoundTrip(ctx context.Context, conn *grpc.ClientConn, lean *leanClientCodec, route string, chunks iter.Seq[[]byte]) (int64, error) {
	ctx, cancel := context.WithCancel(metadata.AppendToOutgoingContext(ctx, routeMetadataKey, route))
	defer cancel()
	desc := &grpc.StreamDesc{StreamName: "Process", ServerStreams: true, ClientStreams: true}
	s, err := conn.NewStream(ctx, desc, extprocv3.ExternalProcessor_Process_FullMethodName, grpc.ForceCodecV2(lean))
	if err != nil {
		return 0, err
	}
	var g errgroup.Group
	g.Go(func() error {
		first := requestHeaders(false, ":path", "/upload", ":method", "POST", "content-type", "application/json")
		first.ProtocolConfig = &extprocv3.ProtocolConfiguration{RequestBodyMode: modeFullDuplex, ResponseBodyMode: modeFullDuplex}
		if err := s.SendMsg(first); err != nil {
			return err
		}
		body := &extprocv3.HttpBody{}
		req := &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestBody{RequestBody: body}}
		for c := range chunks {
			body.Body = c
			if err := s.SendMsg(req); err != nil {
				return err
			}
		}
		body.Body, body.EndOfStream = nil, true
		if err := s.SendMsg(req); err != nil {
			return err
		}
		return s.CloseSend()
	})
	var out int64
	g.Go(func() error {
		var resp streamedSummary
		for !resp.endOfStream {
			if err := s.RecvMsg(&resp); err != nil {
				return fmt.Errorf("receive: %w", err)
			}
			out += int64(resp.bodyLen)
		}
		return nil
	})
	return out, g.Wait()
}

// streamedSummary is what the lean client reads of a ProcessingResponse: the size of
// its streamed body and its end_of_stream.
type streamedSummary struct {
	bodyLen     int
	endOfStream bool
}

// leanClientCodec marshals with codec.go's codec and decodes responses into
// streamedSummary only, without copying their bodies.
type leanClientCodec struct {
	encoding.CodecV2
	pool mem.BufferPool
}

func newLeanClientCodec() *leanClientCodec {
	pool := newMessagePool(benchMessageSize)
	return &leanClientCodec{CodecV2: newCodec(pool), pool: pool}
}

func (c *leanClientCodec) Unmarshal(data mem.BufferSlice, v any) error {
	s, ok := v.(*streamedSummary)
	if !ok {
		return fmt.Errorf("lean client codec: cannot decode into %T", v)
	}
	buf := data.MaterializeToBuffer(c.pool)
	defer buf.Free()
	// ProcessingResponse.request_body (3) or response_body (4) → BodyResponse.response
	// (1) → CommonResponse.body_mutation (3) → BodyMutation.streamed_response (3).
	b := buf.ReadOnlyData()
	streamed := lastField(b, 3)
	if streamed == nil {
		streamed = lastField(b, 4)
	}
	streamed = lastField(lastField(lastField(streamed, 1), 3), 3)
	*s = streamedSummary{bodyLen: len(lastField(streamed, 1))}
	for off := 0; off < len(streamed); {
		num, typ, n := protowire.ConsumeField(streamed[off:])
		if n < 0 {
			return protowire.ParseError(n)
		}
		if num == 2 && typ == protowire.VarintType {
			v, _ := protowire.ConsumeVarint(streamed[off+protowire.SizeTag(num):])
			s.endOfStream = v != 0
		}
		off += n
	}
	return nil
}

// lastField is the payload of the last length-delimited field num of b; nil when none.
func lastField(b []byte, num protowire.Number) []byte {
	var payload []byte
	for len(b) > 0 {
		n, typ, size := protowire.ConsumeField(b)
		if size < 0 {
			return nil
		}
		if n == num && typ == protowire.BytesType {
			payload, _ = protowire.ConsumeBytes(b[protowire.SizeTag(n):size])
		}
		b = b[size:]
	}
	return payload
}

// totalAlloc is the bytes the process has allocated on the heap so far.
func totalAlloc() uint64 {
	s := []rtmetrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	rtmetrics.Read(s)
	return s[0].Value.Uint64()
}
