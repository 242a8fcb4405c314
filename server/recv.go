package server

import (
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// received is one ProcessingRequest as the receive loop gets it. The codec decodes
// the body of a request_body or response_body message as a view into the buffer the
// message arrived in, instead of protobuf's copy of every body byte: buf keeps that
// buffer until free returns it to the pool. Everything else in the message is
// protobuf's own decoding.
//
// Whoever handles req must not keep its body past free: what outlives the message
// (a held preview chunk, a reply) is copied.
type received struct {
	req extprocv3.ProcessingRequest
	buf mem.Buffer // the buffer req's body points into; nil when it points nowhere
}

// ProtoReflect makes received a proto.Message, so that a codec that does not know it
// (grpc-go's default) still decodes into req, with protobuf's copy of the body.
func (r *received) ProtoReflect() protoreflect.Message { return r.req.ProtoReflect() }

// free returns the buffer the body points into; the body must no longer be read.
func (r *received) free() {
	if r.buf != nil {
		r.buf.Free()
		r.buf = nil
	}
}

// Field numbers of ProcessingRequest's oneof "request" and of HttpBody.body
// (envoy/service/ext_proc/v3/external_processor.proto).
const (
	fieldRequestHeaders   protowire.Number = 2
	fieldResponseHeaders  protowire.Number = 3
	fieldRequestBody      protowire.Number = 4
	fieldResponseBody     protowire.Number = 5
	fieldRequestTrailers  protowire.Number = 6
	fieldResponseTrailers protowire.Number = 7
	fieldHTTPBodyBody     protowire.Number = 1
)

// unmarshalReceived decodes one ProcessingRequest from data into r.
//
// The fast path covers the messages Envoy sends with a body: the oneof holds a
// request_body or response_body, given once, whose body field is given once. The
// body then aliases the message's buffer, which r keeps; every other byte of the
// message goes through proto.Unmarshal, so that unknown fields, merging and errors
// are protobuf's. Any other message, including one the fast path cannot vouch for
// (a repeated oneof member, a field of the wrong wire type, a malformed field), is
// decoded by proto.Unmarshal whole, which also reports its error.
func unmarshalReceived(data mem.BufferSlice, pool mem.BufferPool, r *received) error {
	r.free()
	// One reference for r: the buffer itself when the message arrived in one (grpc-go
	// frees data once Unmarshal returns), else a pooled copy of its parts.
	buf := data.MaterializeToBuffer(pool)
	b := buf.ReadOnlyData()
	if err := unmarshalBodyView(b, &r.req); err != nil {
		buf.Free()
		return err
	}
	if len(bodyOf(&r.req)) == 0 {
		buf.Free() // nothing points into it
		return nil
	}
	r.buf = buf
	return nil
}

// unmarshalBodyView decodes b into m like proto.Unmarshal, except that a body it
// can vouch for (see unmarshalReceived) is a view into b.
func unmarshalBodyView(b []byte, m *extprocv3.ProcessingRequest) error {
	member, at, ok := soleBodyMember(b)
	if !ok {
		return proto.Unmarshal(b, m)
	}
	before, field, after := splitField(b, at)
	payload, _ := protowire.ConsumeBytes(field[tagLen(field):])
	bodyAt, ok := soleField(payload, fieldHTTPBodyBody)
	if !ok {
		return proto.Unmarshal(b, m)
	}
	m.Reset()
	if err := mergeAround(before, after, m); err != nil {
		return err
	}
	body := &extprocv3.HttpBody{}
	bodyBefore, bodyField, bodyAfter := splitField(payload, bodyAt)
	if err := mergeAround(bodyBefore, bodyAfter, body); err != nil {
		return err
	}
	// A view, not a copy: b's owner keeps it alive for as long as m is used. Its
	// capacity ends with it, so that an append copies instead of writing into b.
	view, _ := protowire.ConsumeBytes(bodyField[tagLen(bodyField):])
	body.Body = view[:len(view):len(view)]
	if len(view) == 0 {
		body.Body = []byte{} // as protobuf decodes it, pointing nowhere into b
	}
	if member == fieldRequestBody {
		m.Request = &extprocv3.ProcessingRequest_RequestBody{RequestBody: body}
	} else {
		m.Request = &extprocv3.ProcessingRequest_ResponseBody{ResponseBody: body}
	}
	return nil
}

// soleBodyMember reports whether b, a well-formed ProcessingRequest, sets its oneof
// exactly once, to a request_body or response_body of wire type bytes; it returns
// that member and the field's offset in b.
func soleBodyMember(b []byte) (member protowire.Number, at int, ok bool) {
	members := 0
	for off := 0; off < len(b); {
		num, typ, n := protowire.ConsumeField(b[off:])
		if n < 0 {
			return 0, 0, false
		}
		if num >= fieldRequestHeaders && num <= fieldResponseTrailers {
			members++
			member, at = num, off
			if (num != fieldRequestBody && num != fieldResponseBody) || typ != protowire.BytesType {
				return 0, 0, false
			}
		}
		off += n
	}
	return member, at, members == 1
}

// soleField reports whether every field of b is well-formed and field num occurs
// exactly once, with wire type bytes; it returns that field's offset.
func soleField(b []byte, num protowire.Number) (at int, ok bool) {
	seen := 0
	for off := 0; off < len(b); {
		n, typ, size := protowire.ConsumeField(b[off:])
		if size < 0 {
			return 0, false
		}
		if n == num {
			if typ != protowire.BytesType {
				return 0, false
			}
			seen++
			at = off
		}
		off += size
	}
	return at, seen == 1
}

// splitField cuts b around the well-formed field at offset at.
func splitField(b []byte, at int) (before, field, after []byte) {
	_, _, n := protowire.ConsumeField(b[at:])
	return b[:at], b[at : at+n], b[at+n:]
}

// tagLen is the length of the tag that starts field.
func tagLen(field []byte) int {
	_, _, n := protowire.ConsumeTag(field)
	return n
}

// mergeAround decodes the fields before and after a removed one into m, as
// proto.Unmarshal would decode them together: a message's encodings concatenated
// decode as their merge.
func mergeAround(before, after []byte, m proto.Message) error {
	merge := proto.UnmarshalOptions{Merge: true}
	if len(before) > 0 {
		if err := merge.Unmarshal(before, m); err != nil {
			return err
		}
	}
	if len(after) > 0 {
		return merge.Unmarshal(after, m)
	}
	return nil
}

// bodyOf is the body a request carries, if any.
func bodyOf(m *extprocv3.ProcessingRequest) []byte {
	switch r := m.Request.(type) {
	case *extprocv3.ProcessingRequest_RequestBody:
		return r.RequestBody.GetBody()
	case *extprocv3.ProcessingRequest_ResponseBody:
		return r.ResponseBody.GetBody()
	}
	return nil
}
