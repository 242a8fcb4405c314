package main

import (
	"bytes"
	"net/http"
	"testing"

	"github.com/bodystream/bodystream/internal/respondbody"
)

func TestRespond(t *testing.T) {
	s := startEcho(t)
	tests := []struct {
		name, method, query string
		status              int
		header              map[string]string // "" value: absent
		body                []byte
	}{
		{"size and headers", http.MethodGet, "size=100&header=Content-Type:text/html&header=ETag:%22v1%22&header=Cache-Control:no-transform",
			200, map[string]string{"Content-Length": "100", "Content-Type": "text/html", "Etag": `"v1"`, "Cache-Control": "no-transform"}, respondbody.Body(100, false)},
		{"chunked", http.MethodGet, "size=5000&chunked=1", 200, map[string]string{"Content-Length": ""}, respondbody.Body(5000, false)},
		{"random", http.MethodGet, "size=300&fill=random", 200, map[string]string{"Content-Length": "300"}, respondbody.Body(300, true)},
		{"HEAD keeps the length", http.MethodHead, "size=100", 200, map[string]string{"Content-Length": "100"}, nil},
		{"204", http.MethodGet, "size=100&status=204", 204, map[string]string{"Content-Length": ""}, nil},
		{"304", http.MethodGet, "status=304&header=ETag:%22v1%22", 304, map[string]string{"Etag": `"v1"`}, nil},
		{"bad size", http.MethodGet, "size=-1", 400, nil, nil},
		{"bad status", http.MethodGet, "status=99", 400, nil, nil},
		{"bad header", http.MethodGet, "header=NoColon", 400, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequestWithContext(t.Context(), tt.method, s.url("/x/respond")+"?"+tt.query, nil)
			if err != nil {
				t.Fatal(err)
			}
			resp, body := do(t, s.h1, req)
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d (%q), want %d", resp.StatusCode, body, tt.status)
			}
			for k, v := range tt.header {
				if got := resp.Header.Get(k); got != v {
					t.Errorf("%s: %q, want %q", k, got, v)
				}
			}
			if tt.status < 400 && !bytes.Equal(body, tt.body) {
				t.Errorf("body %d bytes, want %d", len(body), len(tt.body))
			}
		})
	}
	if got := string(respondbody.Body(70, false)); got != (respondbody.Text + respondbody.Text)[:70] {
		t.Errorf("respondbody.Body(70) = %q", got)
	}
}
