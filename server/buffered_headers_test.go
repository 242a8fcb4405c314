package server

import (
	"strings"
	"testing"
)

// TestBufferedRequestResultsGoToTheClientOnly: in BUFFERED mode the request body's
// results (a digest header) travel on the response's headers, for the client; the
// request body's answer, whose header mutation Envoy applies to the upstream request,
// carries none of them. The response body's own results stay on the response.
func TestBufferedRequestResultsGoToTheClientOnly(t *testing.T) {
	ts := newTestServer(t, `
pipelines:
  hashed: [hash]
  hashed-gzip: [hash, {gzip: {level: 1, preview_bytes: 0}}]
routes:
  - {name: hashed, request: hashed, response: hashed}
  - {name: hashed-gzip, request: hashed-gzip, response: hashed}
`)
	buffered := modes{modeBuffered, modeBuffered}
	for _, route := range []string{"hashed", "hashed-gzip"} {
		t.Run(route, func(t *testing.T) {
			e := ts.open(route)
			e.send(e.withConfig(requestHeaders(false, ":path", "/up", "content-length", "5"), buffered))
			e.recv() // request headers answered
			e.send(requestBody([]byte("hello"), true))
			reqBody := e.recv().GetRequestBody()
			if reqBody == nil {
				t.Fatal("want the request body's answer")
			}
			for _, h := range reqBody.GetResponse().GetHeaderMutation().GetSetHeaders() {
				if strings.HasPrefix(h.GetHeader().GetKey(), "x-bodystream-") {
					t.Errorf("the request body's answer sets %s on the upstream request", h.GetHeader().GetKey())
				}
			}

			e.send(responseHeaders(false, ":status", "200", "content-length", "2"))
			m := mutationOf(e.recv())
			if v, ok := setValue(m, "x-bodystream-request-sha256"); !ok || v != "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824" {
				t.Errorf("response headers carry x-bodystream-request-sha256 %q (set %v), want the request body's digest", v, ok)
			}
			e.send(responseBody([]byte("ok"), true))
			respBody := e.recv().GetResponseBody()
			if _, ok := setValue(respBody.GetResponse().GetHeaderMutation(), "x-bodystream-response-sha256"); !ok {
				t.Errorf("the response body's answer lacks its own digest header: %v", respBody)
			}
		})
	}
}
