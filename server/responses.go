package server

import (
	"maps"
	"slices"
	"strconv"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/bodystream/bodystream/config"
	"github.com/bodystream/bodystream/stage"
)

// metadataNamespace is the dynamic metadata namespace bodystream writes; envoy.yaml
// must list it in metadata_options.receiving_namespaces.
const metadataNamespace = "bodystream"

func common(mutation *extprocv3.HeaderMutation, body *extprocv3.BodyMutation) *extprocv3.CommonResponse {
	if mutation == nil && body == nil {
		return nil
	}
	return &extprocv3.CommonResponse{HeaderMutation: mutation, BodyMutation: body}
}

func headersResponse(dir stage.Direction, mutation *extprocv3.HeaderMutation) *extprocv3.ProcessingResponse {
	h := &extprocv3.HeadersResponse{Response: common(mutation, nil)}
	if dir == stage.Request {
		return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestHeaders{RequestHeaders: h}}
	}
	return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseHeaders{ResponseHeaders: h}}
}

// bodyResponse answers a STREAMED or BUFFERED body message. A nil body leaves Envoy's
// own copy of the chunk in place.
func bodyResponse(dir stage.Direction, body *extprocv3.BodyMutation, mutation *extprocv3.HeaderMutation, result stage.Result) *extprocv3.ProcessingResponse {
	b := &extprocv3.BodyResponse{Response: common(mutation, body)}
	resp := &extprocv3.ProcessingResponse{DynamicMetadata: dynamicMetadata(result)}
	if dir == stage.Request {
		resp.Response = &extprocv3.ProcessingResponse_RequestBody{RequestBody: b}
	} else {
		resp.Response = &extprocv3.ProcessingResponse_ResponseBody{ResponseBody: b}
	}
	return resp
}

// streamedBodyResponse is one FULL_DUPLEX_STREAMED message: Envoy accepts nothing
// but a streamed_response in that mode.
func streamedBodyResponse(dir stage.Direction, body []byte, endOfStream bool, result stage.Result) *extprocv3.ProcessingResponse {
	mutation := &extprocv3.BodyMutation{Mutation: &extprocv3.BodyMutation_StreamedResponse{
		StreamedResponse: &extprocv3.StreamedBodyResponse{Body: body, EndOfStream: endOfStream},
	}}
	return bodyResponse(dir, mutation, nil, result)
}

func replaceBody(out []byte) *extprocv3.BodyMutation {
	if len(out) == 0 {
		return &extprocv3.BodyMutation{Mutation: &extprocv3.BodyMutation_ClearBody{ClearBody: true}}
	}
	return &extprocv3.BodyMutation{Mutation: &extprocv3.BodyMutation_Body{Body: out}}
}

func trailersResponse(dir stage.Direction, result stage.Result) *extprocv3.ProcessingResponse {
	var mutation *extprocv3.HeaderMutation
	if len(result.Trailers) > 0 {
		mutation = headerMutation(stage.HeaderEdit{}, result.Trailers)
	}
	t := &extprocv3.TrailersResponse{HeaderMutation: mutation}
	resp := &extprocv3.ProcessingResponse{DynamicMetadata: dynamicMetadata(result)}
	if dir == stage.Request {
		resp.Response = &extprocv3.ProcessingResponse_RequestTrailers{RequestTrailers: t}
	} else {
		resp.Response = &extprocv3.ProcessingResponse_ResponseTrailers{ResponseTrailers: t}
	}
	return resp
}

// headerMutation turns a pipeline's edit and extra headers into Envoy's mutation; nil
// when nothing changes.
func headerMutation(edit stage.HeaderEdit, set map[string]string) *extprocv3.HeaderMutation {
	m := &extprocv3.HeaderMutation{}
	if edit.ContentEncoding != nil {
		if *edit.ContentEncoding == "" {
			m.RemoveHeaders = append(m.RemoveHeaders, contentEncoding)
		} else {
			setHeader(m, contentEncoding, *edit.ContentEncoding)
		}
	}
	if edit.ChangesLength {
		m.RemoveHeaders = append(m.RemoveHeaders, contentLength)
	}
	setOrRemove(m, "vary", edit.Vary)
	setOrRemove(m, "etag", edit.ETag)
	for _, k := range slices.Sorted(maps.Keys(set)) {
		setHeader(m, k, set[k])
	}
	if len(m.SetHeaders) == 0 && len(m.RemoveHeaders) == 0 {
		return nil
	}
	return m
}

// setOrRemove sets key to *v, removes it when *v is empty, and leaves it when v is nil.
func setOrRemove(m *extprocv3.HeaderMutation, key string, v *string) {
	switch {
	case v == nil:
	case *v == "":
		m.RemoveHeaders = append(m.RemoveHeaders, key)
	default:
		setHeader(m, key, *v)
	}
}

// withRouteEdits adds a route's fixed header edits (config: route request_headers,
// response_headers) to m, which may be nil. Validation keeps them off the headers m
// itself edits (content-encoding, content-length) and off what Envoy's default
// mutation_rules refuse.
func withRouteEdits(m *extprocv3.HeaderMutation, e config.HeaderEdits) *extprocv3.HeaderMutation {
	if e.Empty() {
		return m
	}
	if m == nil {
		m = &extprocv3.HeaderMutation{}
	}
	for _, k := range slices.Sorted(maps.Keys(e.Set)) {
		setHeader(m, k, e.Set[k])
	}
	for _, k := range slices.Sorted(maps.Keys(e.Append)) {
		addHeader(m, k, e.Append[k], true)
	}
	m.RemoveHeaders = append(m.RemoveHeaders, e.Remove...)
	return m
}

// setHeader overwrites a header.
func setHeader(m *extprocv3.HeaderMutation, key, value string) { addHeader(m, key, value, false) }

// addHeader sets a header, or adds a value to it when add is true: ext_proc honours
// `append` (default false) but not append_action, so append is set explicitly.
func addHeader(m *extprocv3.HeaderMutation, key, value string, add bool) {
	m.SetHeaders = append(m.SetHeaders, &corev3.HeaderValueOption{
		Header: &corev3.HeaderValue{Key: key, RawValue: []byte(value)},
		//lint:ignore SA1019 ext_proc reads append, not append_action (Envoy 1.40)
		Append: wrapperspb.Bool(add),
	})
}

func removeString(list []string, s string) []string {
	out := list[:0]
	for _, v := range list {
		if v != s {
			out = append(out, v)
		}
	}
	return out
}

func dynamicMetadata(result stage.Result) *structpb.Struct {
	if len(result.Metadata) == 0 {
		return nil
	}
	fields := make(map[string]*structpb.Value, len(result.Metadata))
	for k, v := range result.Metadata {
		fields[k] = structpb.NewStringValue(v)
	}
	return &structpb.Struct{Fields: map[string]*structpb.Value{
		metadataNamespace: structpb.NewStructValue(&structpb.Struct{Fields: fields}),
	}}
}

func itoa(n int) string { return strconv.Itoa(n) }
