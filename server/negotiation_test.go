package server

import (
	"testing"
)

const negotiationConfig = `
pipelines:
  negotiated: [{compress: {encodings: [{name: gzip}], preview_bytes: 0}}]
routes:
  - {name: negotiated, request: identity, response: negotiated}
`

// TestResponseSeesRequestHeaders: the response's pipeline decides from the request's
// Accept-Encoding, which only the request headers message carried; with the request
// headers skipped, the response passes as it is.
func TestResponseSeesRequestHeaders(t *testing.T) {
	ts := newTestServer(t, negotiationConfig)
	streamed := modes{modeNone, modeStreamed}
	tests := []struct {
		name           string
		requestHeaders []string // nil: header mode SKIP, no request headers message
		encoding, vary string
	}{
		{"accepts gzip", []string{":path", "/x", "accept-encoding", "br;q=0.5, gzip"}, "gzip", "Origin, Accept-Encoding"},
		{"accepts none", []string{":path", "/x"}, "", "Origin, Accept-Encoding"},
		{"request headers skipped", nil, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := ts.open("negotiated")
			if tt.requestHeaders != nil {
				e.send(e.withConfig(requestHeaders(true, tt.requestHeaders...), streamed))
				e.recv()
			}
			e.send(e.withConfig(responseHeaders(false, ":status", "200", "content-type", "text/plain", "vary", "Origin"), streamed))
			m := mutationOf(e.recv())
			enc, _ := setValue(m, "content-encoding")
			vary, _ := setValue(m, "vary")
			if enc != tt.encoding || vary != tt.vary {
				t.Errorf("content-encoding %q, vary %q; want %q, %q", enc, vary, tt.encoding, tt.vary)
			}
			body := text(10 << 10)
			e.send(responseBody(body, true))
			out := e.recv().GetResponseBody().GetResponse().GetBodyMutation().GetBody()
			switch {
			case tt.encoding == "gzip" && string(gunzip(t, out)) != string(body):
				t.Error("the gzip body does not decode to the response")
			case tt.encoding == "" && out != nil:
				t.Errorf("an untouched body must leave Envoy's copy, got %d bytes back", len(out))
			}
		})
	}
}
