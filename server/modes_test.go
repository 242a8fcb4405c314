package server

import (
	"bytes"
	"testing"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
)

var fullDuplex = modes{modeFullDuplex, modeFullDuplex}

func TestFullDuplexRoundTrip(t *testing.T) {
	ts := newTestServer(t, testConfig)
	random := randomBytes(300<<10, 1)
	cases := []struct {
		name, route string
		body        []byte
		chunk       int
		gzipped     bool
	}{
		{"identity empty", "identity", nil, 1, false},
		{"identity 1B", "identity", []byte("x"), 1, false},
		{"identity random in 16KiB chunks", "identity", random, 16 << 10, false},
		{"identity random in 100B chunks", "identity", random[:50<<10], 100, false},
		{"gzip empty", "gzip", nil, 1, true},
		{"gzip 1B", "gzip", []byte("x"), 1, true},
		{"gzip text", "gzip", text(200 << 10), 16 << 10, true},
		{"gzip random", "gzip", random, 7 << 10, true},
		{"gzip with preview, text", "gzip-preview", text(100 << 10), 3 << 10, true},
		{"gzip with preview, short text", "gzip-preview", text(100), 30, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := ts.open(tc.route)
			e.send(e.withConfig(requestHeaders(false, ":path", "/up", "content-length", "1", "content-type", "application/json"), fullDuplex))
			// Envoy sends while it receives: a body larger than the windows would
			// otherwise wait on its own unread output.
			sent := sendBodyConcurrently(t, e, split(tc.body, tc.chunk))
			hr := e.recv()
			if hr.GetRequestHeaders() == nil {
				t.Fatalf("first response is %v, want the request headers response", hr)
			}
			m := mutationOf(hr)
			if enc, _ := setValue(m, "content-encoding"); tc.gzipped != (enc == "gzip") {
				t.Errorf("content-encoding set to %q, gzipped=%v", enc, tc.gzipped)
			}
			if tc.gzipped != removes(m, "content-length") {
				t.Errorf("content-length removed=%v, want %v", removes(m, "content-length"), tc.gzipped)
			}
			got := e.streamedBodies(4 << 10)
			if tc.gzipped {
				got = gunzip(t, got)
			}
			if !bytes.Equal(got, tc.body) {
				t.Fatalf("body differs: got %d bytes, want %d", len(got), len(tc.body))
			}
			if err := <-sent; err != nil {
				t.Fatalf("send: %v", err)
			}
		})
	}
}

func TestFullDuplexSkipsIncompressibleAfterPreview(t *testing.T) {
	ts := newTestServer(t, testConfig)
	random := randomBytes(64<<10, 2)
	e := ts.open("gzip-preview")
	e.send(e.withConfig(requestHeaders(false, ":path", "/up"), fullDuplex))
	for i, c := range split(random, 1000) {
		e.send(requestBody(c, i == len(random)/1000))
	}
	if m := mutationOf(e.recv()); m != nil {
		t.Fatalf("random body: want no header mutation, got %v", m)
	}
	if got := e.streamedBodies(4 << 10); !bytes.Equal(got, random) {
		t.Fatal("random body was not passed through untouched")
	}
}

func TestFullDuplexTrailers(t *testing.T) {
	ts := newTestServer(t, testConfig)
	body := text(50 << 10)
	e := ts.open("gzip")
	e.send(e.withConfig(requestHeaders(false, ":path", "/up"), fullDuplex))
	for _, c := range split(body, 8<<10) {
		e.send(requestBody(c, false))
	}
	e.send(requestTrailers("x-checksum", "abc"))
	if e.recv().GetRequestHeaders() == nil {
		t.Fatal("want the headers response first")
	}
	var out bytes.Buffer
	for {
		resp := e.recv()
		if tr := resp.GetRequestTrailers(); tr != nil {
			break
		}
		sr := resp.GetRequestBody().GetResponse().GetBodyMutation().GetStreamedResponse()
		if sr == nil {
			t.Fatalf("want body or trailers response, got %v", resp)
		}
		if sr.GetEndOfStream() {
			t.Fatal("end_of_stream set on a body response although trailers follow")
		}
		out.Write(sr.GetBody())
	}
	if !bytes.Equal(gunzip(t, out.Bytes()), body) {
		t.Fatal("body differs")
	}
}

func TestFullDuplexHeaderSkip(t *testing.T) {
	ts := newTestServer(t, testConfig)
	body := text(20 << 10)
	e := ts.open("gzip")
	chunks := split(body, 5<<10)
	e.send(e.withConfig(requestBody(chunks[0], false), fullDuplex))
	for i, c := range chunks[1:] {
		e.send(requestBody(c, i == len(chunks)-2))
	}
	if got := gunzip(t, e.streamedBodies(4<<10)); !bytes.Equal(got, body) {
		t.Fatal("body differs")
	}
}

func TestFullDuplexBothDirections(t *testing.T) {
	ts := newTestServer(t, testConfig)
	up, down := text(30<<10), text(40<<10)
	e := ts.open("gzip")
	e.send(e.withConfig(requestHeaders(false, ":path", "/up"), fullDuplex))
	e.send(requestBody(up, true))
	e.recv() // request headers response
	if got := gunzip(t, e.streamedBodies(4<<10)); !bytes.Equal(got, up) {
		t.Fatal("request body differs")
	}
	e.send(responseHeaders(false, ":status", "200", "content-type", "text/plain"))
	e.send(responseBody(down, true))
	hr := e.recv()
	if enc, _ := setValue(mutationOf(hr), "content-encoding"); hr.GetResponseHeaders() == nil || enc != "gzip" {
		t.Fatalf("want response headers response with gzip, got %v", hr)
	}
	if got := gunzip(t, e.streamedBodies(4<<10)); !bytes.Equal(got, down) {
		t.Fatal("response body differs")
	}
}

func TestStreamedOneReplyPerChunk(t *testing.T) {
	ts := newTestServer(t, testConfig)
	body := text(100 << 10)
	streamed := modes{modeStreamed, modeStreamed}
	for _, route := range []string{"identity", "gzip"} {
		t.Run(route, func(t *testing.T) {
			e := ts.open(route)
			e.send(e.withConfig(requestHeaders(false, ":path", "/up"), streamed))
			hr := e.recv()
			if enc, _ := setValue(mutationOf(hr), "content-encoding"); (route == "gzip") != (enc == "gzip") {
				t.Fatalf("content-encoding %q on route %s", enc, route)
			}
			chunks := split(body, 16<<10)
			var out bytes.Buffer
			for i, c := range chunks {
				last := i == len(chunks)-1
				e.send(requestBody(c, last))
				resp := e.recv()
				br := resp.GetRequestBody()
				if br == nil {
					t.Fatalf("chunk %d: want a body response, got %v", i, resp)
				}
				mutation := br.GetResponse().GetBodyMutation()
				if route == "identity" {
					if mutation != nil {
						t.Fatalf("identity must leave Envoy's copy in place, got %v", mutation)
					}
					out.Write(c)
					continue
				}
				if mutation.GetStreamedResponse() != nil {
					t.Fatal("streamed_response is spurious in STREAMED mode")
				}
				out.Write(mutation.GetBody())
			}
			got := out.Bytes()
			if route == "gzip" {
				got = gunzip(t, got)
			}
			if !bytes.Equal(got, body) {
				t.Fatal("body differs")
			}
		})
	}
}

func TestStreamedTransformWithTrailersFailsLoudly(t *testing.T) {
	ts := newTestServer(t, testConfig)
	e := ts.open("gzip")
	e.send(e.withConfig(requestHeaders(false, ":path", "/up"), modes{modeStreamed, modeStreamed}))
	e.recv()
	e.send(requestBody(text(10<<10), false))
	e.recv()
	e.send(requestTrailers("x-a", "b"))
	ir := e.recv().GetImmediateResponse()
	if ir == nil || ir.GetStatus().GetCode() != 500 {
		t.Fatalf("want an immediate 500, got %v", ir)
	}
	if !bytes.Contains(ir.GetBody(), []byte("FULL_DUPLEX_STREAMED")) {
		t.Errorf("the error should say what to do instead: %s", ir.GetBody())
	}
}

func TestBuffered(t *testing.T) {
	ts := newTestServer(t, testConfig)
	body := text(64 << 10)
	cases := []struct {
		name  string
		mode  modes
		route string
		eos   bool
		// want: transformed body and content-length; else Envoy's copy kept.
		transformed bool
	}{
		{"BUFFERED gzip", modes{modeBuffered, modeBuffered}, "gzip", true, true},
		{"BUFFERED identity", modes{modeBuffered, modeBuffered}, "identity", true, false},
		{"BUFFERED_PARTIAL whole body", modes{modePartial, modePartial}, "gzip", true, true},
		{"BUFFERED_PARTIAL prefix only", modes{modePartial, modePartial}, "gzip", false, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := ts.open(tc.route)
			e.send(e.withConfig(requestHeaders(false, ":path", "/up", "content-length", "65536"), tc.mode))
			if m := mutationOf(e.recv()); m != nil {
				t.Fatalf("BUFFERED header response must wait for the body, got %v", m)
			}
			e.send(requestBody(body, tc.eos))
			br := e.recv().GetRequestBody().GetResponse()
			if !tc.transformed {
				if br.GetBodyMutation() != nil {
					t.Fatalf("want Envoy's copy kept, got a body mutation")
				}
				return
			}
			out := br.GetBodyMutation().GetBody()
			if !bytes.Equal(gunzip(t, out), body) {
				t.Fatal("body differs")
			}
			m := br.GetHeaderMutation()
			if cl, _ := setValue(m, "content-length"); cl != itoa(len(out)) {
				t.Errorf("content-length %q, want %d", cl, len(out))
			}
			if removes(m, "content-length") {
				t.Error("content-length both set and removed")
			}
			if enc, _ := setValue(m, "content-encoding"); enc != "gzip" {
				t.Errorf("content-encoding %q", enc)
			}
		})
	}
}

func TestNoneModeAndBodilessMessages(t *testing.T) {
	ts := newTestServer(t, testConfig)
	e := ts.open("gzip")
	e.send(e.withConfig(requestHeaders(true, ":path", "/get"), modes{modeNone, modeNone}))
	if r := e.recv(); r.GetRequestHeaders() == nil || mutationOf(r) != nil {
		t.Fatalf("want a plain headers response, got %v", r)
	}
	e.send(responseHeaders(false, ":status", "200"))
	if r := e.recv(); r.GetResponseHeaders() == nil || mutationOf(r) != nil {
		t.Fatalf("want a plain headers response, got %v", r)
	}
}

func TestRouteSelection(t *testing.T) {
	ts := newTestServer(t, testConfig)
	cases := []struct {
		name, metadata, path string
		gzipped              bool
	}{
		{"metadata names route", "gzip", "/anything", true},
		{"path prefix", "", "/zip/file", true},
		{"default", "", "/other", false},
		{"unknown metadata falls back to path", "nope", "/zip", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := ts.open(tc.metadata)
			e.send(e.withConfig(requestHeaders(false, ":path", tc.path), modes{modeStreamed, modeNone}))
			enc, _ := setValue(mutationOf(e.recv()), "content-encoding")
			if (enc == "gzip") != tc.gzipped {
				t.Fatalf("content-encoding %q, want gzipped=%v", enc, tc.gzipped)
			}
		})
	}
}

func TestImmediateResponseForStageFailure(t *testing.T) {
	ts := newTestServer(t, `
pipelines:
  small: [{limit: {max_bytes: 1000}}]
routes:
  - {name: limited, request: small, response: small}
`)
	for _, mode := range []modes{fullDuplex, {modeStreamed, modeStreamed}, {modeBuffered, modeBuffered}} {
		t.Run(modeName(mode.request), func(t *testing.T) {
			e := ts.open("limited")
			e.send(e.withConfig(requestHeaders(false, ":path", "/up"), mode))
			if mode.request != modeFullDuplex {
				e.recv() // headers response
			}
			if mode.request == modeBuffered {
				e.send(requestBody(text(1200), true)) // the whole body in one message
			} else {
				e.send(requestBody(text(600), false))
				e.send(requestBody(text(600), true))
			}
			var ir *extprocv3.ImmediateResponse
			for ir == nil {
				ir = e.recv().GetImmediateResponse()
			}
			if ir.GetStatus().GetCode() != 413 {
				t.Fatalf("status %v, want 413", ir.GetStatus().GetCode())
			}
			if !bytes.Contains(ir.GetBody(), []byte("limit")) {
				t.Errorf("body should name the stage: %s", ir.GetBody())
			}
		})
	}
}
