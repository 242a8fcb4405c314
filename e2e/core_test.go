package e2e

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"testing"

	"github.com/dustin/go-humanize"

	"github.com/bodystream/bodystream/internal/harness"
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
			for _, kind := range []harness.BodyKind{harness.BodyRandom, harness.BodyJSON} {
				for _, proto := range []protocol{h1Length, h1Chunked, h2} {
					name := fmt.Sprintf("%s/%s/%s/%s", route, humanize.IBytes(uint64(size)), kind, proto.name)
					t.Run(name, func(t *testing.T) {
						sent, got := upload(t, s.URL+"/"+route+"/echo", proto, kind, size)
						if route == "buffered" && size > 16<<20 {
							// Beyond request_body_buffer_limit Envoy refuses a BUFFERED body itself.
							if got.Status != http.StatusRequestEntityTooLarge {
								t.Fatalf("status %d, want 413 above the buffer limit", got.Status)
							}
							return
						}
						if got.Status != http.StatusOK {
							t.Fatalf("status %d: %q", got.Status, got.Head)
						}
						if err := got.Verify(sent.Sent()); err != nil {
							t.Fatalf("%v (content-encoding %q)", err, got.Encoding)
						}
						// Text is compressed on these routes whenever a transform sees it:
						// prove the transform ran, not only that bytes survived.
						if kind == harness.BodyJSON && size >= 100<<10 && got.Encoding != "gzip" {
							t.Errorf("text came back with content-encoding %q, want gzip", got.Encoding)
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
			report := sink(t, s.URL+"/"+route+"/sink", h2, harness.BodyJSON, size)
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
// echo's plain response is compressed by bodystream on its way to a client that
// accepts gzip; one that says nothing gets it as it is.
func TestE2EResponseTransformed(t *testing.T) {
	s := needStack(t)
	t.Run("no accept-encoding", func(t *testing.T) {
		data := textBody(t, 256<<10)
		got := post(t, s.URL+"/streamed/echo", data, nil)
		if got.Status != 200 || got.Encoding != "" {
			t.Fatalf("status %d, content-encoding %q: want 200 and none", got.Status, got.Encoding)
		}
		if v := got.Header.Get("Vary"); v != "Accept-Encoding" {
			t.Errorf("vary %q, want Accept-Encoding: the choice depended on it", v)
		}
		if hex.EncodeToString(got.Sum) != sha(data) {
			t.Fatal("the response is not the upload")
		}
	})
	sent, got := upload(t, s.URL+"/streamed/echo", h1Length, harness.BodyJSON, 3<<20)
	if got.Encoding != "gzip" {
		t.Fatalf("response content-encoding %q, want gzip", got.Encoding)
	}
	if v := got.Header.Get("Vary"); v != "Accept-Encoding" {
		t.Errorf("vary %q, want Accept-Encoding", v)
	}
	if got.Header.Get("Content-Length") != "" {
		t.Errorf("a compressed streamed response must not keep a content-length, got %q", got.Header.Get("Content-Length"))
	}
	if err := got.Verify(sent.Sent()); err != nil {
		t.Fatalf("response does not decode to the upload: %v", err)
	}
}

// TestE2ETrailers sends an HTTP/2 request with trailers on the full-duplex route:
// the body ends with trailers, not end_of_stream, and both must arrive.
func TestE2ETrailers(t *testing.T) {
	s := needStack(t)
	payload := bytes.Repeat([]byte("trailers follow this body\n"), 40000)
	pr, pw := io.Pipe()
	trailer := http.Header{"X-Upload-Checksum": nil}
	go func() {
		pw.Write(payload)
		trailer.Set("X-Upload-Checksum", "abc123")
		pw.Close()
	}()
	got, err := harness.Upload(t.Context(), transports[harness.H2], harness.Request{
		URL: s.URL + "/full-duplex-streamed/sink", Body: pr, Length: -1, Trailer: trailer})
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != http.StatusOK {
		t.Fatalf("status %d: %q", got.Status, got.Head)
	}
	report := report(t, got)
	if report.ContentEncoding != "gzip" {
		t.Errorf("upstream content-encoding %q, want gzip", report.ContentEncoding)
	}
	if report.Trailers["x-upload-checksum"] != "abc123" {
		t.Errorf("upstream trailers %v, want x-upload-checksum: abc123", report.Trailers)
	}
}
