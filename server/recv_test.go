package server

import (
	"bytes"
	"testing"
	"unsafe"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	filterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc/encoding"
	_ "google.golang.org/grpc/encoding/proto" // registers grpc-go's default codec
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
)

// marshal is proto.Marshal for building test inputs.
func marshal(t testing.TB, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// field encodes one length-delimited field.
func field(num protowire.Number, payload []byte) []byte {
	b := protowire.AppendTag(nil, num, protowire.BytesType)
	return protowire.AppendBytes(b, payload)
}

// varintField encodes one varint field.
func varintField(num protowire.Number, v uint64) []byte {
	b := protowire.AppendTag(nil, num, protowire.VarintType)
	return protowire.AppendVarint(b, v)
}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

// receiveCase is one input for the decoder: its encoding, and whether the decoder
// should take the fast path (the body a view into the input).
type receiveCase struct {
	name    string
	data    []byte
	aliased bool
}

// receiveCases are the decoder's table, and the fuzz target's seed corpus
// (testdata/fuzz/FuzzUnmarshalReceived holds the same inputs).
func receiveCases(t testing.TB) []receiveCase {
	body := text(2000)
	withEverything := requestBody(body, true)
	withEverything.ProtocolConfig = &extprocv3.ProtocolConfiguration{RequestBodyMode: filterv3.ProcessingMode_FULL_DUPLEX_STREAMED}
	withEverything.MetadataContext = &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{"a": {Fields: map[string]*structpb.Value{"k": structpb.NewStringValue("v")}}}}
	withEverything.Attributes = map[string]*structpb.Struct{attributesKey: {Fields: map[string]*structpb.Value{"request.path": structpb.NewStringValue("/up")}}}
	withEverything.ObservabilityMode = true

	httpBody := marshal(t, &extprocv3.HttpBody{Body: body, EndOfStream: true})
	bodyField := field(fieldHTTPBodyBody, body)
	eos := varintField(2, 1)
	config := field(11, marshal(t, &extprocv3.ProtocolConfiguration{ResponseBodyMode: filterv3.ProcessingMode_STREAMED}))
	headersMsg := field(fieldRequestHeaders, marshal(t, &extprocv3.HttpHeaders{Headers: headers(":path", "/x")}))
	unknown := varintField(99, 7)
	badUTF8 := field(fieldRequestHeaders, field(1, field(1, field(1, []byte{0xff, 0xfe}))))

	return []receiveCase{
		{"request body", marshal(t, requestBody(body, false)), true},
		{"response body with end of stream", marshal(t, responseBody(body, true)), true},
		{"one-byte body", marshal(t, requestBody([]byte("x"), false)), true},
		{"empty body, end of stream", marshal(t, requestBody(nil, true)), false},
		{"empty body field given", field(fieldRequestBody, cat(field(fieldHTTPBodyBody, nil), eos)), false},
		{"body with every other field", marshal(t, withEverything), true},
		{"fields after the body", cat(field(fieldRequestBody, httpBody), config, unknown), true},
		{"fields around the body", cat(config, field(fieldResponseBody, httpBody), unknown), true},
		{"end of stream before the body field", field(fieldRequestBody, cat(eos, bodyField)), true},
		{"unknown field in the body message", field(fieldRequestBody, cat(bodyField, unknown, varintField(3, 1))), true},
		{"every flag of the body message", field(fieldResponseBody, cat(bodyField, varintField(2, 1), varintField(3, 1), varintField(4, 1), varintField(5, 1))), true},
		{"overlong varint flag", field(fieldRequestBody, cat(bodyField, protowire.AppendVarint(protowire.AppendTag(nil, 2, protowire.VarintType), 1<<40))), true},
		{"request headers", marshal(t, requestHeaders(false, ":path", "/x", "content-type", "text/plain")), false},
		{"response headers", marshal(t, responseHeaders(true, ":status", "200")), false},
		{"request trailers", marshal(t, requestTrailers("x-a", "b")), false},
		{"response trailers", marshal(t, &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseTrailers{ResponseTrailers: &extprocv3.HttpTrailers{}}}), false},
		{"empty message", nil, false},
		{"body then headers: the last oneof member wins", cat(field(fieldRequestBody, httpBody), headersMsg), false},
		{"headers then body", cat(headersMsg, field(fieldRequestBody, httpBody)), false},
		{"request body then response body", cat(field(fieldRequestBody, httpBody), field(fieldResponseBody, httpBody)), false},
		{"body message twice: merged", cat(field(fieldRequestBody, bodyField), field(fieldRequestBody, eos)), false},
		{"body field twice: the last wins", field(fieldRequestBody, cat(field(fieldHTTPBodyBody, []byte("first")), bodyField)), false},
		{"body member as a varint: unknown field", cat(varintField(fieldRequestBody, 1), marshal(t, requestHeaders(true))), false},
		{"body field as a varint: unknown field", field(fieldRequestBody, cat(varintField(fieldHTTPBodyBody, 5), eos)), false},
		{"truncated body field", marshal(t, requestBody(body, true))[:100], false},
		{"truncated body message", field(fieldRequestBody, bodyField[:50]), false},
		{"invalid UTF-8 beside a body", cat(badUTF8, field(fieldRequestBody, httpBody)), false},
		{"invalid UTF-8 in the attributes of a body message", cat(field(9, field(1, []byte{0xc3, 0x28})), field(fieldRequestBody, httpBody)), false},
		{"field number zero", cat([]byte{0x02, 0x00}, field(fieldRequestBody, httpBody)), false},
		{"junk", []byte("\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff"), false},
		{"end group without start", cat(field(fieldRequestBody, httpBody), protowire.AppendTag(nil, 20, protowire.EndGroupType)), false},
	}
}

// asBuffers splits data into buffers at cut, as grpc-go hands over a message that
// spans HTTP/2 frames; cut outside (0, len) gives one buffer.
func asBuffers(data []byte, cut int) mem.BufferSlice {
	if cut <= 0 || cut >= len(data) {
		return mem.BufferSlice{mem.SliceBuffer(data)}
	}
	return mem.BufferSlice{mem.SliceBuffer(data[:cut]), mem.SliceBuffer(data[cut:])}
}

// within reports whether b's bytes lie inside buf.
func within(b, buf []byte) bool {
	if len(b) == 0 || len(buf) == 0 {
		return false
	}
	start, end := uintptr(unsafe.Pointer(&buf[0])), uintptr(unsafe.Pointer(&buf[0]))+uintptr(len(buf))
	p := uintptr(unsafe.Pointer(&b[0]))
	return p >= start && p+uintptr(len(b)) <= end
}

// checkAgainstProtobuf decodes data (cut into two buffers at cut) with the codec and
// with proto.Unmarshal and fails unless both give the same message or both fail. It
// returns the codec's result, still holding its buffer.
func checkAgainstProtobuf(t *testing.T, c *codec, data []byte, cut int) *received {
	t.Helper()
	want := &extprocv3.ProcessingRequest{}
	wantErr := proto.Unmarshal(data, want)
	got := &received{}
	gotErr := c.Unmarshal(asBuffers(data, cut), got)
	switch {
	case (wantErr != nil) != (gotErr != nil):
		t.Fatalf("protobuf's error %v, the codec's %v", wantErr, gotErr)
	case wantErr == nil && !proto.Equal(&got.req, want):
		t.Fatalf("the codec decoded %v, protobuf %v", &got.req, want)
	case gotErr != nil && got.buf != nil:
		t.Fatal("the codec kept a buffer after an error")
	}
	return got
}

func TestUnmarshalReceivedMatchesProtobuf(t *testing.T) {
	c := &codec{pool: newMessagePool(64 << 10)}
	for _, tc := range receiveCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			for _, cut := range []int{0, 7, len(tc.data) / 2} {
				got := checkAgainstProtobuf(t, c, tc.data, cut)
				body := bodyOf(&got.req)
				aliased := got.buf != nil && within(body, got.buf.ReadOnlyData())
				if aliased != tc.aliased {
					t.Errorf("cut at %d: body is a view into the receive buffer: %v, want %v", cut, aliased, tc.aliased)
				}
				if aliased && (cut <= 0 || cut >= len(tc.data)) && !within(body, tc.data) {
					t.Errorf("a message in one buffer was copied")
				}
				if aliased && cap(body) != len(body) {
					t.Errorf("the body view has capacity %d beyond its %d bytes: an append would write into the buffer", cap(body), len(body))
				}
				got.free()
				if got.buf != nil {
					t.Fatal("free left the buffer")
				}
			}
		})
	}
}

// TestDefaultCodecDecodesReceived: a server run with grpc-go's default codec instead
// of codec.go's (BenchmarkServerCodec does) still decodes into received, with
// protobuf's copy of the body and no buffer kept.
func TestDefaultCodecDecodesReceived(t *testing.T) {
	c := encoding.GetCodecV2("proto")
	for _, tc := range receiveCases(t) {
		want := &extprocv3.ProcessingRequest{}
		wantErr := proto.Unmarshal(tc.data, want)
		got := &received{}
		err := c.Unmarshal(asBuffers(tc.data, len(tc.data)/2), got)
		if (err != nil) != (wantErr != nil) || (err == nil && !proto.Equal(&got.req, want)) || got.buf != nil {
			t.Fatalf("%s: decoded %v (error %v, buffer kept %v), want %v (error %v)", tc.name, &got.req, err, got.buf != nil, want, wantErr)
		}
	}
}

// TestFreedBodyIsPoisoned checks the use-after-free detector the mode tests rely on
// (newTestServer): once a received message is freed, a body kept past it reads
// poison, not the body.
func TestFreedBodyIsPoisoned(t *testing.T) {
	pool := newMessagePool(64 << 10)
	pool.poison = true
	c := &codec{pool: pool}
	body := text(20 << 10)
	data := marshal(t, requestBody(body, true))
	got := &received{}
	if err := c.Unmarshal(asBuffers(data, 1000), got); err != nil {
		t.Fatal(err)
	}
	kept := bodyOf(&got.req)
	if !bytes.Equal(kept, body) {
		t.Fatal("body differs before free")
	}
	got.free()
	if !bytes.Equal(kept, bytes.Repeat([]byte{poisonByte}, len(kept))) {
		t.Fatal("a body kept past free still reads as the body: the poisoning would hide a use after free")
	}
}

// FuzzUnmarshalReceived: for any input, cut into two buffers anywhere, the codec
// decodes the same message as proto.Unmarshal, or fails where it fails.
func FuzzUnmarshalReceived(f *testing.F) {
	for _, tc := range receiveCases(f) {
		f.Add(tc.data, uint16(len(tc.data)/3))
	}
	c := &codec{pool: newMessagePool(64 << 10)}
	f.Fuzz(func(t *testing.T, data []byte, cut uint16) {
		got := checkAgainstProtobuf(t, c, data, int(cut))
		got.free()
	})
}
