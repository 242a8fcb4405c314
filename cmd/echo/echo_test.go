package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// randomBytes returns n reproducible pseudo-random bytes.
func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.NewChaCha8([32]byte{byte(n), byte(n >> 8), byte(n >> 16)}).Read(b)
	return b
}

// transport names a client and how it frames the request body.
type transport struct {
	name     string
	proto    string // the response's protocol, to show the client spoke what it says
	client   func(*echoServer) *http.Client
	chunked  bool // hide the length, so HTTP/1.1 sends chunked and HTTP/2 no content-length
	trailers bool // whether the framing can carry request trailers
}

var transports = []transport{
	{"http1-content-length", "HTTP/1.1", func(s *echoServer) *http.Client { return s.h1 }, false, false},
	{"http1-chunked", "HTTP/1.1", func(s *echoServer) *http.Client { return s.h1 }, true, true},
	{"h2c", "HTTP/2.0", func(s *echoServer) *http.Client { return s.h2c }, false, true},
	{"h2c-no-length", "HTTP/2.0", func(s *echoServer) *http.Client { return s.h2c }, true, true},
}

func newRequest(t testing.TB, ctx context.Context, url string, body []byte, chunked bool) *http.Request {
	t.Helper()
	var r io.Reader = bytes.NewReader(body)
	if chunked {
		r = io.MultiReader(r) // hides Len from net/http
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, r)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

func do(t testing.TB, client *http.Client, req *http.Request) (*http.Response, []byte) {
	t.Helper()
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read response to %s %s: %v", req.Method, req.URL, err)
	}
	return resp, body
}

func TestEchoIsByteExact(t *testing.T) {
	s := startEcho(t)
	sizes := []int{0, 1, 100 << 10, 8 << 20}
	for _, tr := range transports {
		for _, size := range sizes {
			t.Run(fmt.Sprintf("%s/%d", tr.name, size), func(t *testing.T) {
				data := randomBytes(size)
				req := newRequest(t, t.Context(), s.url("/full-duplex-streamed/echo"), data, tr.chunked)
				req.Header.Set("Content-Type", "application/x-test")
				req.Header.Set("Content-Encoding", "gzip")
				resp, got := do(t, tr.client(s), req)

				if resp.StatusCode != http.StatusOK {
					t.Fatalf("status %d, want 200: %s", resp.StatusCode, got)
				}
				if resp.Proto != tr.proto {
					t.Errorf("answered over %s, want %s", resp.Proto, tr.proto)
				}
				if !bytes.Equal(got, data) {
					t.Fatalf("echo of %d bytes returned %d bytes that differ", len(data), len(got))
				}
				if ct := resp.Header.Get("Content-Type"); ct != "application/x-test" {
					t.Errorf("Content-Type %q, want the request's", ct)
				}
				if ce := resp.Header.Get("Content-Encoding"); ce != "gzip" {
					t.Errorf("Content-Encoding %q, want the request's", ce)
				}
				if size > 0 && resp.ContentLength != -1 {
					t.Errorf("streamed echo declared Content-Length %d", resp.ContentLength)
				}
			})
		}
	}
}

func TestEchoAddsNoContentType(t *testing.T) {
	s := startEcho(t)
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			// Bytes net/http would sniff as text/html.
			data := []byte("<html><body>not declared</body></html>")
			resp, got := do(t, tr.client(s), newRequest(t, t.Context(), s.url("/echo"), data, tr.chunked))
			if !bytes.Equal(got, data) {
				t.Fatalf("echo returned %q, want %q", got, data)
			}
			if ct, ok := resp.Header["Content-Type"]; ok {
				t.Errorf("response has Content-Type %q; the request had none", ct)
			}
		})
	}
}

// TestEchoIsFullDuplex reads the echo of a first chunk while the request body is still
// open: a buffering server would wait for the end of the body and never answer.
func TestEchoIsFullDuplex(t *testing.T) {
	s := startEcho(t)
	clients := map[string]*http.Client{"http1": s.h1, "h2c": s.h2c}
	for name, client := range clients {
		t.Run(name, func(t *testing.T) {
			// A buffering server never answers; fail then instead of hanging.
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			body, bodyWriter := io.Pipe()
			defer bodyWriter.Close()
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url("/streamed/echo"), body)
			if err != nil {
				t.Fatal(err)
			}
			first, rest := randomBytes(1000), randomBytes(70<<10)

			// Do returns with the response header, which leaves with the first chunk.
			wrote := make(chan error, 1)
			go func() {
				_, err := bodyWriter.Write(first)
				wrote <- err
			}()
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if err := <-wrote; err != nil {
				t.Fatalf("write first chunk: %v", err)
			}
			gotFirst := make([]byte, len(first))
			if _, err := io.ReadFull(resp.Body, gotFirst); err != nil {
				t.Fatalf("read echo of first chunk: %v", err)
			}
			if !bytes.Equal(gotFirst, first) {
				t.Fatal("echo of first chunk differs")
			}

			go func() {
				_, err := bodyWriter.Write(rest)
				bodyWriter.CloseWithError(err) // nil closes with EOF
				wrote <- err
			}()
			gotRest, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatalf("read rest of echo: %v", err)
			}
			if err := <-wrote; err != nil {
				t.Fatalf("write rest: %v", err)
			}
			if !bytes.Equal(gotRest, rest) {
				t.Fatalf("echo of the rest: %d bytes that differ from the %d sent", len(gotRest), len(rest))
			}
		})
	}
}

func TestEchoReturnsTrailers(t *testing.T) {
	s := startEcho(t)
	for _, tr := range transports {
		if !tr.trailers {
			continue
		}
		for _, size := range []int{0, 50 << 10} {
			t.Run(fmt.Sprintf("%s/%d", tr.name, size), func(t *testing.T) {
				data := randomBytes(size)
				// Go's HTTP/2 client, given http.NoBody and trailers, sends
				// HEADERS without END_STREAM and then nothing: the stream never
				// ends. An empty body of unknown length ends with the trailers.
				req := newRequest(t, t.Context(), s.url("/streamed/echo"), data, tr.chunked || size == 0)
				req.Trailer = http.Header{"X-Bodystream-Digest": {"abc"}, "Grpc-Status": {"0"}}
				resp, got := do(t, tr.client(s), req)
				if !bytes.Equal(got, data) {
					t.Fatalf("echo differs from the %d bytes sent", size)
				}
				for name, want := range req.Trailer {
					if got := resp.Trailer.Get(name); got != want[0] {
						t.Errorf("response trailer %s = %q, want %q", name, got, want[0])
					}
				}
			})
		}
	}
}

func TestSinkReportsWhatArrived(t *testing.T) {
	s := startEcho(t)
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			data := randomBytes(300 << 10)
			req := newRequest(t, t.Context(), s.url("/buffered/sink"), data, tr.chunked)
			req.Header.Set("Content-Type", "application/octet-stream")
			req.Header.Set("Content-Encoding", "zstd")
			req.Header.Set("X-Bodystream-Run", "r1")
			req.Header.Add("X-Bodystream-Case", "a")
			req.Header.Add("X-Bodystream-Case", "b")
			req.Header.Set("X-Other", "not reported")
			wantTrailers := map[string]string{}
			if tr.trailers {
				req.Trailer = http.Header{"X-Bodystream-Digest": {"d1"}}
				wantTrailers["x-bodystream-digest"] = "d1"
			}
			resp, answer := do(t, tr.client(s), req)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d: %s", resp.StatusCode, answer)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q, want application/json", ct)
			}
			var got sinkReport
			if err := json.Unmarshal(answer, &got); err != nil {
				t.Fatalf("decode %s: %v", answer, err)
			}
			sum := sha256.Sum256(data)
			want := sinkReport{
				Bytes:           int64(len(data)),
				SHA256:          hex.EncodeToString(sum[:]),
				ContentEncoding: "zstd",
				ContentType:     "application/octet-stream",
				Trailers:        wantTrailers,
				Headers:         map[string]string{"x-bodystream-run": "r1", "x-bodystream-case": "a, b"},
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("sink answered\n%+v\nwant\n%+v", got, want)
			}
		})
	}
}

func TestSinkJSONNames(t *testing.T) {
	s := startEcho(t)
	_, answer := do(t, s.h2c, newRequest(t, t.Context(), s.url("/sink"), nil, false))
	var fields map[string]any
	if err := json.Unmarshal(answer, &fields); err != nil {
		t.Fatalf("decode %s: %v", answer, err)
	}
	for _, name := range []string{"bytes", "sha256", "content_encoding", "content_type", "trailers", "headers"} {
		if _, ok := fields[name]; !ok {
			t.Errorf("sink answer %s has no %q", answer, name)
		}
	}
	if fields["sha256"] != hex.EncodeToString(sha256.New().Sum(nil)) {
		t.Errorf("sha256 of an empty body: %v", fields["sha256"])
	}
}

func TestBufferedEcho(t *testing.T) {
	const limit = 64 << 10
	s := startEcho(t, "-buffered", "-max-buffered", "64KiB")
	for _, tr := range transports {
		for _, tc := range []struct {
			size       int
			wantStatus int
		}{
			{0, http.StatusOK},
			{10 << 10, http.StatusOK},
			{limit, http.StatusOK},
			{limit + 1, http.StatusRequestEntityTooLarge},
			{4 * limit, http.StatusRequestEntityTooLarge},
		} {
			t.Run(fmt.Sprintf("%s/%d", tr.name, tc.size), func(t *testing.T) {
				data := randomBytes(tc.size)
				req := newRequest(t, t.Context(), s.url("/buffered/echo"), data, tr.chunked)
				req.Header.Set("Content-Type", "application/x-test")
				resp, got := do(t, tr.client(s), req)
				if resp.StatusCode != tc.wantStatus {
					t.Fatalf("status %d, want %d: %.200s", resp.StatusCode, tc.wantStatus, got)
				}
				if tc.wantStatus != http.StatusOK {
					return
				}
				if resp.ContentLength != int64(len(data)) {
					t.Errorf("Content-Length %d, want %d", resp.ContentLength, len(data))
				}
				if !bytes.Equal(got, data) {
					t.Errorf("echo differs from the %d bytes sent", len(data))
				}
				if ct := resp.Header.Get("Content-Type"); ct != "application/x-test" {
					t.Errorf("Content-Type %q, want the request's", ct)
				}
			})
		}
	}
}

func TestHealthz(t *testing.T) {
	s := startEcho(t)
	for _, tc := range []struct {
		method, path string
		wantStatus   int
		wantBody     string
	}{
		{http.MethodGet, "/healthz", http.StatusOK, "ok"},
		{http.MethodGet, "/streamed/healthz", http.StatusOK, "ok"},
		{http.MethodPost, "/healthz", http.StatusMethodNotAllowed, ""},
	} {
		t.Run(tc.method+tc.path, func(t *testing.T) {
			req, err := http.NewRequestWithContext(t.Context(), tc.method, s.url(tc.path), nil)
			if err != nil {
				t.Fatal(err)
			}
			resp, body := do(t, s.h1, req)
			if resp.StatusCode != tc.wantStatus {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.wantStatus)
			}
			if tc.wantBody != "" && string(body) != tc.wantBody {
				t.Errorf("body %q, want %q", body, tc.wantBody)
			}
		})
	}
}

func TestLastSegment(t *testing.T) {
	for path, want := range map[string]string{
		"/echo":                      "echo",
		"/full-duplex-streamed/echo": "echo",
		"/buffered/x/sink":           "sink",
		"/streamed/sink/":            "",
		"/":                          "",
		"":                           "",
		"/sinkhole":                  "sinkhole",
	} {
		if got := lastSegment(path); got != want {
			t.Errorf("lastSegment(%q) = %q, want %q", path, got, want)
		}
	}
}

// TestClientHangUp cancels uploads midway and checks that each handler saw the
// failure and returned: Run only returns once every handler has.
func TestClientHangUp(t *testing.T) {
	s := startEcho(t)
	clients := map[string]*http.Client{"http1": s.h1, "h2c": s.h2c}
	for name, client := range clients {
		for _, path := range []string{"/streamed/echo", "/streamed/sink"} {
			t.Run(name+path, func(t *testing.T) {
				ctx, cancel := context.WithCancel(t.Context())
				body, bodyWriter := io.Pipe()
				req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url(path), body)
				if err != nil {
					t.Fatal(err)
				}
				if path == "/streamed/sink" {
					// Sink answers only at the end. A write this large is taken
					// by the transport only once the handler has read most of it,
					// more than socket buffers and flow-control windows hold.
					wrote := make(chan error, 1)
					go func() {
						_, err := bodyWriter.Write(randomBytes(16 << 20))
						wrote <- err
					}()
					done := make(chan error, 1)
					go func() {
						resp, err := client.Do(req)
						if err == nil {
							resp.Body.Close()
							err = errors.New("sink answered a body that never ended")
						}
						done <- err
					}()
					if err := <-wrote; err != nil {
						t.Fatal(err)
					}
					hangUp(cancel, bodyWriter)
					if err := <-done; !errors.Is(err, context.Canceled) {
						t.Fatalf("Do: %v, want context.Canceled", err)
					}
					return
				}
				first := randomBytes(1000)
				wrote := make(chan error, 1)
				go func() {
					_, err := bodyWriter.Write(first)
					wrote <- err
				}()
				resp, err := client.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := io.ReadFull(resp.Body, make([]byte, len(first))); err != nil {
					t.Fatal(err)
				}
				hangUp(cancel, bodyWriter)
				resp.Body.Close()
				if err := <-wrote; err != nil {
					t.Fatal(err)
				}
			})
		}
	}
	// Each handler learns of its hang-up on its own goroutine, possibly after the
	// client returned: wait (bounded) for all four lines rather than count once.
	for deadline := time.Now().Add(10 * time.Second); strings.Count(s.stderr.String(), "request failed") < 4; {
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := s.stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if n := strings.Count(s.stderr.String(), "request failed"); n != 4 {
		t.Errorf("%d failed requests logged, want 4:\n%s", n, s.stderr)
	}
}

// hangUp abandons a request midway. net/http's HTTP/1.1 client waits for its body
// writer to stop before a cancelled round trip returns, and that writer is blocked
// reading the body: the body has to end too, with an error so that it is not mistaken
// for a complete one.
func hangUp(cancel context.CancelFunc, body *io.PipeWriter) {
	cancel()
	body.CloseWithError(context.Canceled)
}

func TestVerboseLogsEachRequest(t *testing.T) {
	for _, verbose := range []bool{false, true} {
		t.Run(fmt.Sprint("v=", verbose), func(t *testing.T) {
			var args []string
			if verbose {
				args = append(args, "-v")
			}
			s := startEcho(t, args...)
			data := randomBytes(5000)
			do(t, s.h2c, newRequest(t, t.Context(), s.url("/streamed/echo"), data, false))
			do(t, s.h1, newRequest(t, t.Context(), s.url("/streamed/sink"), data, false))
			// Full duplex and flushing must reach the server's writer through
			// the recorder that -v wraps around it.
			large := randomBytes(1 << 20)
			if _, got := do(t, s.h1, newRequest(t, t.Context(), s.url("/h1/echo"), large, true)); !bytes.Equal(got, large) {
				t.Errorf("HTTP/1.1 echo of %d bytes returned %d bytes that differ", len(large), len(got))
			}
			if err := s.stop(); err != nil {
				t.Fatalf("Run: %v", err)
			}
			log := s.stderr.String()
			if !verbose {
				if log != "" {
					t.Errorf("logged without -v:\n%s", log)
				}
				return
			}
			for _, want := range []string{
				"path=/streamed/echo proto=HTTP/2.0 status=200 bytes_in=5000 bytes_out=5000",
				"path=/streamed/sink proto=HTTP/1.1 status=200 bytes_in=5000",
				"path=/h1/echo proto=HTTP/1.1 status=200 bytes_in=1048576 bytes_out=1048576",
			} {
				if !strings.Contains(log, want) {
					t.Errorf("log has no %q:\n%s", want, log)
				}
			}
		})
	}
}

func TestRunStopsOnCancel(t *testing.T) {
	s := startEcho(t)
	do(t, s.h2c, newRequest(t, t.Context(), s.url("/echo"), []byte("x"), false))
	if err := s.stop(); err != nil {
		t.Fatalf("Run returned %v after cancel, want nil", err)
	}
	if _, err := os.Stat(s.readyFile); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("ready file still there after Run returned: %v", err)
	}
}

func TestRunFailsToStart(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	for name, args := range map[string][]string{
		"address in use":  {"-listen", taken.Addr().String()},
		"ready file dir":  {"-listen", "127.0.0.1:0", "-ready-file", filepath.Join(t.TempDir(), "missing", "addr")},
		"bad flag":        {"-max-buffered", "lots"},
		"extra arguments": {"serve"},
	} {
		t.Run(name, func(t *testing.T) {
			if err := Run(t.Context(), args, io.Discard, io.Discard); err == nil {
				t.Error("Run returned nil")
			}
		})
	}
}

func TestParseFlags(t *testing.T) {
	for _, tc := range []struct {
		args    []string
		want    config
		wantErr bool
	}{
		{args: nil, want: config{listen: "127.0.0.1:18081", maxBuffered: 256 << 20}},
		{
			args: []string{"-listen", ":0", "-buffered", "-max-buffered", "1GB", "-ready-file", "f", "-v"},
			want: config{listen: ":0", buffered: true, maxBuffered: 1e9, readyFile: "f", verbose: true},
		},
		{args: []string{"-max-buffered", "1KiB"}, want: config{listen: "127.0.0.1:18081", maxBuffered: 1024}},
		{args: []string{"-max-buffered", "0"}, wantErr: true},
		{args: []string{"-max-buffered", "many"}, wantErr: true},
		{args: []string{"-nope"}, wantErr: true},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			got, err := parseFlags(tc.args, io.Discard)
			if (err != nil) != tc.wantErr {
				t.Fatalf("error %v, want error: %v", err, tc.wantErr)
			}
			if err == nil && got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestHelpIsNotAnError(t *testing.T) {
	var usage bytes.Buffer
	if err := Run(t.Context(), []string{"-h"}, io.Discard, &usage); err != nil {
		t.Fatalf("Run -h: %v", err)
	}
	if !strings.Contains(usage.String(), "-max-buffered") {
		t.Errorf("usage does not list -max-buffered:\n%s", usage.String())
	}
	if _, err := parseFlags([]string{"-h"}, io.Discard); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("parseFlags -h: %v, want flag.ErrHelp", err)
	}
}

// BenchmarkEcho streams one long h2c body through echo in 64 KiB writes while reading
// the echo back concurrently.
func BenchmarkEcho(b *testing.B) {
	const chunkSize = 64 << 10
	s := startEcho(b)
	chunk := randomBytes(chunkSize)
	b.SetBytes(chunkSize)

	body, bodyWriter := io.Pipe()
	req, err := http.NewRequestWithContext(b.Context(), http.MethodPost, s.url("/full-duplex-streamed/echo"), body)
	if err != nil {
		b.Fatal(err)
	}
	wrote := make(chan error, 1)
	b.ResetTimer()
	go func() {
		var err error
		for i := 0; i < b.N && err == nil; i++ {
			_, err = bodyWriter.Write(chunk)
		}
		bodyWriter.CloseWithError(err)
		wrote <- err
	}()
	resp, err := s.h2c.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	n, err := io.Copy(io.Discard, resp.Body)
	if err != nil {
		b.Fatal(err)
	}
	if err := <-wrote; err != nil {
		b.Fatal(err)
	}
	if want := int64(b.N) * chunkSize; n != want {
		b.Fatalf("echoed %d bytes, want %d", n, want)
	}
}
