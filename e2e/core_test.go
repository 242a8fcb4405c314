package e2e

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"testing"

	"github.com/dustin/go-humanize"
)

// TestE2ERoutes sends bodies of every size and kind over every protocol through every
// route, and checks that what comes back decodes to what was sent.
func TestE2ERoutes(t *testing.T) {
	s := needStack(t)
	sizes := []int64{0, 1, 100 << 10, 64 << 20}
	if testing.Short() {
		sizes = sizes[:3]
	}
	for _, route := range []string{"full-duplex-streamed", "streamed", "buffered"} {
		for _, size := range sizes {
			for _, kind := range []string{"random", "text"} {
				for _, proto := range []protocol{h1Length, h1Chunked, h2} {
					name := fmt.Sprintf("%s/%s/%s/%s", route, humanize.IBytes(uint64(size)), kind, proto)
					t.Run(name, func(t *testing.T) {
						sent, got := upload(t, s.URL+"/"+route+"/echo", proto, kind, size, nil)
						if route == "buffered" && size > 16<<20 {
							// Beyond request_body_buffer_limit Envoy refuses a BUFFERED body itself.
							if got.status != http.StatusRequestEntityTooLarge {
								t.Fatalf("status %d, want 413 above the buffer limit", got.status)
							}
							return
						}
						if got.status != http.StatusOK {
							t.Fatalf("status %d: %q", got.status, got.raw)
						}
						if got.size != size || got.digest != sent.digest() {
							t.Fatalf("got %d bytes (sha256 %s…), sent %d (%s…), content-encoding %q",
								got.size, got.digest[:12], size, sent.digest()[:12], got.encoding)
						}
						// Text is compressed on these routes whenever a transform sees it:
						// prove the transform ran, not only that bytes survived.
						if kind == "text" && size >= 100<<10 && got.encoding != "gzip" {
							t.Errorf("text came back with content-encoding %q, want gzip", got.encoding)
						}
					})
				}
			}
		}
	}
}

// TestE2EUpstreamReceivesCompressed checks what the upstream saw: gzip of the upload.
func TestE2EUpstreamReceivesCompressed(t *testing.T) {
	s := needStack(t)
	for _, route := range []string{"full-duplex-streamed", "buffered"} {
		t.Run(route, func(t *testing.T) {
			const size = 1 << 20
			_, report := sink(t, s.URL+"/"+route+"/sink", h2, "text", size, nil)
			if report.ContentEncoding != "gzip" {
				t.Fatalf("upstream saw content-encoding %q, want gzip", report.ContentEncoding)
			}
			if report.Bytes <= 0 || report.Bytes > size/3 {
				t.Fatalf("upstream got %d bytes for %d of text: not compressed", report.Bytes, size)
			}
		})
	}
}

// TestE2EResponseTransformed: on /streamed the request goes up as it is and the
// echo's plain response is compressed by bodystream on its way to the client.
func TestE2EResponseTransformed(t *testing.T) {
	s := needStack(t)
	sent, got := upload(t, s.URL+"/streamed/echo", h1Length, "text", 3<<20, nil)
	if got.encoding != "gzip" {
		t.Fatalf("response content-encoding %q, want gzip", got.encoding)
	}
	if got.header.Get("Content-Length") != "" {
		t.Errorf("a compressed streamed response must not keep a content-length, got %q", got.header.Get("Content-Length"))
	}
	if got.digest != sent.digest() || got.size != 3<<20 {
		t.Fatal("response does not decode to the upload")
	}
}

// TestE2ETrailers sends an HTTP/2 request with trailers on the full-duplex route:
// the body ends with trailers, not end_of_stream, and both must arrive.
func TestE2ETrailers(t *testing.T) {
	s := needStack(t)
	payload := bytes.Repeat([]byte("trailers follow this body\n"), 40000)
	pr, pw := io.Pipe()
	req, err := http.NewRequest(http.MethodPost, s.URL+"/full-duplex-streamed/sink", pr)
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = -1
	req.Trailer = http.Header{"X-Upload-Checksum": nil}
	go func() {
		pw.Write(payload)
		req.Trailer.Set("X-Upload-Checksum", "abc123")
		pw.Close()
	}()
	resp, err := clients[h2].Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	got := readResult(t, resp)
	if got.status != http.StatusOK {
		t.Fatalf("status %d: %q", got.status, got.raw)
	}
	var report sinkReport
	if err := jsonUnmarshalGzip(got, resp, &report); err != nil {
		t.Fatal(err)
	}
	if report.ContentEncoding != "gzip" {
		t.Errorf("upstream content-encoding %q, want gzip", report.ContentEncoding)
	}
	if report.Trailers["x-upload-checksum"] != "abc123" {
		t.Errorf("upstream trailers %v, want x-upload-checksum: abc123", report.Trailers)
	}
}
