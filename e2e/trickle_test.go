package e2e

import (
	"bytes"
	"compress/gzip"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/bodystream/bodystream/internal/harness"
)

// TestE2ETrickleStreams: on the full-duplex gzip route, a line written after a pause
// comes back through Envoy, gzip and the echo while the upload is still open: the
// compressor flushes when its input pauses and the chunker when its output does.
func TestE2ETrickleStreams(t *testing.T) {
	s := needStack(t)
	pr, pw := io.Pipe()
	defer pw.Close()
	req, err := http.NewRequest(http.MethodPost, s.URL+"/full-duplex-streamed/echo", pr)
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = -1
	req.Header.Set("Content-Type", "application/json")

	// The first preview_bytes (8 KiB) are held while the compressor decides.
	head := textBody(t, 16<<10)
	line := []byte(`{"event": "a line after a pause"}` + "\n")
	go pw.Write(head)

	responses := make(chan *http.Response, 1)
	go func() {
		resp, err := transports[harness.H2].RoundTrip(req)
		if err != nil {
			t.Errorf("request: %v", err)
			close(responses)
			return
		}
		responses <- resp
	}()
	var resp *http.Response
	select {
	case resp = <-responses:
	case <-time.After(10 * time.Second):
		t.Fatal("no response headers within 10s while the upload is open")
	}
	if resp == nil {
		return
	}
	defer resp.Body.Close()
	if resp.Header.Get("Content-Encoding") != "gzip" {
		t.Fatalf("content-encoding %q, want gzip", resp.Header.Get("Content-Encoding"))
	}
	zr, err := gzip.NewReader(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	readWithin := func(want []byte) {
		t.Helper()
		got := make([]byte, len(want))
		done := make(chan error, 1)
		go func() {
			_, err := io.ReadFull(zr, got)
			done <- err
		}()
		select {
		case err := <-done:
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("read %d bytes (%v), want %d matching", len(got), err, len(want))
			}
		case <-time.After(10 * time.Second):
			pw.CloseWithError(io.ErrUnexpectedEOF)
			t.Fatal("bytes written did not come back within 10s while the upload stayed open")
		}
	}
	readWithin(head)
	go pw.Write(line)
	readWithin(line)
	pw.Close()
	if rest, err := io.ReadAll(zr); err != nil || len(rest) != 0 {
		t.Fatalf("after the end: %d more bytes, %v", len(rest), err)
	}
}
