package faults

import (
	"context"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bodystream/bodystream/internal/harness"
)

var protocols = []harness.Protocol{harness.H1, harness.H2}

// bodyModes are Envoy's routes with one body mode each (resources/envoy.yaml): the
// first three are the modes, scan and archive add the observers that hold state
// (scanner, open file).
var bodyModes = []string{"streamed", "buffered", "full-duplex-streamed", "scan", "archive"}

// TestClientHangsUp: a client that hangs up mid-upload, in every body mode over h1 and
// h2, gets nothing (its request fails), the upstream never sees the body end cleanly,
// no file is archived, and bodystream frees the stream.
func TestClientHangsUp(t *testing.T) {
	s := startStack(t, stackOptions{})
	const size, pauseAt = 1 << 20, 256 << 10
	for _, route := range bodyModes {
		for _, proto := range protocols {
			t.Run(route+"/"+string(proto), func(t *testing.T) {
				ctx, hangUp := context.WithCancel(t.Context())
				defer hangUp()
				id := newRequestID(t)
				bodyBefore := s.gauges(t, requestMessages)[requestMessages]
				src, err := harness.NewBody(harness.BodyRandom, size, 1, "")
				if err != nil {
					t.Fatal(err)
				}
				body := newGatedBody(ctx, src, pauseAt, nil) // its gate never opens
				done := make(chan error, 1)
				go func() {
					_, err := harness.Upload(ctx, s.transports[proto], harness.Request{URL: s.URL + "/" + route + "/echo", Body: body, Length: size,
						Header: http.Header{"Content-Type": {"video/mp4"}, "X-Request-Id": {id}}})
					done <- err
				}()
				// The upload is under way in bodystream: its stream is open and, but in
				// BUFFERED mode where Envoy holds the body until its end, body arrived.
				s.waitGauge(t, streamsActive, "a stream open", func(v float64) bool { return v >= 1 })
				if route != "buffered" {
					s.waitGauge(t, requestMessages, "body received", func(v float64) bool { return v > bodyBefore })
				}
				hangUp()
				if err := <-done; err == nil {
					t.Fatal("the upload succeeded after its client hung up")
				}
				s.checkNoLeak(t)
				saw := s.checkNoCleanTruncation(t, id, nil)
				t.Logf("upstream saw: %+v", saw)
				if matches, _ := filepath.Glob(filepath.Join(s.archive, id+"*")); len(matches) > 0 {
					t.Errorf("an aborted upload was archived: %v", matches)
				}
			})
		}
	}
}

// TestUpstreamDown: with the echo stopped, every body mode answers 503 from Envoy
// (its connect failure), bodystream frees every stream, and once the upstream is back
// the next upload is byte-exact.
func TestUpstreamDown(t *testing.T) {
	s := startStack(t, stackOptions{})
	if err := s.Kill("echo"); err != nil {
		t.Fatal(err)
	}
	for _, route := range bodyModes {
		for _, proto := range protocols {
			header := http.Header{"X-Request-Id": {newRequestID(t)}}
			body, res, err := s.upload(t.Context(), t, "/"+route+"/echo", proto, harness.BodyRandom, 64<<10, header)
			n, sum := body.Sent()
			s.checkArchived(t, header.Get("X-Request-Id"), n, sum, false)
			if err != nil {
				t.Errorf("%s over %s: %v", route, proto, err)
				continue
			}
			if res.Status != http.StatusServiceUnavailable || !strings.Contains(string(res.Head), "upstream connect error") {
				t.Errorf("%s over %s: status %d %q, want Envoy's 503 upstream connect error", route, proto, res.Status, res.Head)
			}
		}
	}
	s.checkNoLeak(t)
	if err := s.Restart(t.Context(), "echo"); err != nil {
		t.Fatal(err)
	}
	for _, proto := range protocols {
		s.exact(t, "/full-duplex-streamed/echo", proto, 256<<10)
	}
	s.checkNoLeak(t)
}

// TestUpstreamResetsMidBody: an upstream that resets after reading part of the body,
// before it answers, gets the client a 503 from Envoy in every body mode, and nothing
// of the stream is left in bodystream.
func TestUpstreamResetsMidBody(t *testing.T) {
	s := startStack(t, stackOptions{})
	for _, route := range bodyModes {
		for _, proto := range protocols {
			header := http.Header{"X-Request-Id": {newRequestID(t)}}
			body, res, err := s.upload(t.Context(), t, "/"+route+"/reset?after=16384", proto, harness.BodyRandom, 256<<10, header)
			n, sum := body.Sent()
			s.checkArchived(t, header.Get("X-Request-Id"), n, sum, false)
			if err != nil {
				t.Errorf("%s over %s: %v", route, proto, err)
				continue
			}
			if res.Status != http.StatusServiceUnavailable {
				t.Errorf("%s over %s: status %d %q, want 503", route, proto, res.Status, res.Head)
			}
			t.Logf("%s over %s: %d %q", route, proto, res.Status, res.Head)
			s.checkNoCleanTruncation(t, header.Get("X-Request-Id"), nil)
		}
	}
	s.checkNoLeak(t)
}

// TestUpstreamResetsMidResponse: an upstream that has answered 200 and sent part of
// the body back, then resets, leaves the client with a 200 whose body breaks off with
// an error, never one that ends cleanly, in every body mode, with the response
// compressed by bodystream on its way (gzip) or passed as it is (the echo's gzip of
// the upload). Where Envoy still held the response headers for bodystream (STREAMED,
// BUFFERED), the client gets Envoy's 503 instead.
//
// The test's Envoy has delayed_close_timeout 1 s: an HTTP/1.1 client that Envoy sent
// nothing waits that long for the connection to close (see TestBodystreamKilled).
func TestUpstreamResetsMidResponse(t *testing.T) {
	s := startStack(t, stackOptions{envoyEdits: map[string]string{"delayed_close_timeout: 30s": "delayed_close_timeout: 1s"}})
	for _, route := range []string{"streamed", "full-duplex-streamed", "buffered"} {
		for _, proto := range protocols {
			for _, accept := range []string{"gzip", ""} {
				header := http.Header{"X-Request-Id": {newRequestID(t)}, "Accept-Encoding": {accept}}
				_, res, err := s.upload(t.Context(), t, "/"+route+"/reset?echo=1&after=65536", proto, harness.BodyJSON, 256<<10, header)
				t.Logf("%s over %s, accept-encoding %q: %d, content-encoding %q, %d bytes decoded, %v (wire: %v)", route, proto, accept, res.Status, res.Encoding, res.Decoded, err, res.WireEnd)
				if err != nil && res.EndedCleanly() {
					t.Errorf("%s over %s, accept-encoding %q: the HTTP framing ended cleanly on a body that does not decode: truncated, passed off as complete", route, proto, accept)
				}
				if err == nil && res.Status == http.StatusServiceUnavailable {
					continue // Envoy's own answer: the response had not started downstream
				}
				if err == nil {
					t.Errorf("%s over %s, accept-encoding %q: status %d and %d bytes that ended cleanly: a truncated body passed off as complete",
						route, proto, accept, res.Status, res.Decoded)
				}
			}
		}
	}
	s.checkNoLeak(t)
}
