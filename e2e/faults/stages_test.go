package faults

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"

	"github.com/bodystream/bodystream/internal/harness"
)

// TestArchiveDirFull: the archive route's file stage has max_dir_bytes 1 MiB. A
// 768 KiB upload is archived whole; a 512 KiB one would pass the cap and gets 507
// with bodystream's JSON error, over h1 and h2, and leaves no file, partial or
// temporary; a 200 KiB one still fits.
func TestArchiveDirFull(t *testing.T) {
	s := startStack(t, stackOptions{})
	archiveOne := func(proto harness.Protocol, size int64, want int) {
		t.Helper()
		header := http.Header{"X-Request-Id": {newRequestID(t)}}
		body, res, err := s.upload(t.Context(), t, "/archive/sink", proto, harness.BodyRandom, size, header)
		if err != nil {
			t.Fatal(err)
		}
		if res.Status != want {
			t.Fatalf("%d bytes over %s: status %d %q, want %d", size, proto, res.Status, res.Head, want)
		}
		n, sum := body.Sent()
		s.checkArchived(t, header.Get("X-Request-Id"), n, sum, want == http.StatusOK)
		if want != http.StatusOK {
			var answer struct{ Error string }
			if err := json.Unmarshal(res.Head, &answer); err != nil || !strings.Contains(answer.Error, "storage") && !strings.Contains(answer.Error, "max_dir_bytes") {
				t.Errorf("the 507's body %q does not say the storage is full", res.Head)
			}
			s.checkNoCleanTruncation(t, header.Get("X-Request-Id"), nil)
			t.Logf("%d bytes over %s: %d %s", size, proto, res.Status, res.Head)
		}
	}
	archiveOne(harness.H2, 768<<10, http.StatusOK)
	archiveOne(harness.H1, 512<<10, http.StatusInsufficientStorage)
	archiveOne(harness.H2, 512<<10, http.StatusInsufficientStorage)
	archiveOne(harness.H1, 200<<10, http.StatusOK)
	entries, err := os.ReadDir(s.archive)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 2 {
		t.Errorf("the archive holds %d entries, want the 2 uploads that fitted", len(entries))
	}
	s.checkNoLeak(t)
}

// TestScanAcrossChunkBoundaries: the EICAR string trickles through Envoy to the scan
// route in pieces of 1 byte (so that a chunk boundary falls at every offset of the
// pattern), and of 1 to 7 bytes, each piece its own body message to bodystream: the
// upload gets 403 naming rule eicar, over h2 and HTTP/1.1 chunked. So does a gzip
// body carrying it, cut in 1- to 7-byte pieces: the decoder resumes at every cut. The
// same trickles with the pattern's last byte changed pass byte-exact.
func TestScanAcrossChunkBoundaries(t *testing.T) {
	s := startStack(t, stackOptions{})
	prefix := []byte("a trickled upload that carries ")
	nearMiss := []byte(eicar[:len(eicar)-1] + "_")
	cases := []struct {
		name    string
		pattern []byte
		pieces  func(i int) int
		gzip    bool // the whole body gzipped, then cut
		status  int
	}{
		{"1-byte pieces", []byte(eicar), func(int) int { return 1 }, false, http.StatusForbidden},
		{"1- to 7-byte pieces", []byte(eicar), func(i int) int { return 1 + i%7 }, false, http.StatusForbidden},
		{"near miss in 1- to 7-byte pieces", nearMiss, func(i int) int { return 1 + i%7 }, false, http.StatusOK},
		{"gzip in 1- to 7-byte pieces", []byte(eicar), func(i int) int { return 1 + i%7 }, true, http.StatusForbidden},
		{"gzip near miss in 1- to 7-byte pieces", nearMiss, func(i int) int { return 1 + i%7 }, true, http.StatusOK},
	}
	for _, c := range cases {
		for _, proto := range protocols {
			t.Run(c.name+"/"+string(proto), func(t *testing.T) {
				plain := append(slices.Clone(prefix), c.pattern...)
				pieces, cut, encoding := [][]byte{prefix}, c.pattern, ""
				if c.gzip {
					var b bytes.Buffer
					zw := gzip.NewWriter(&b)
					zw.Write(plain)
					zw.Close()
					pieces, cut, encoding = nil, b.Bytes(), "gzip"
				}
				for i := 0; len(cut) > 0; i++ {
					n := min(c.pieces(i), len(cut))
					pieces = append(pieces, cut[:n])
					cut = cut[n:]
				}
				id := newRequestID(t)
				status, answer := s.trickle(t, proto, "/scan/sink", id, encoding, pieces)
				if status != c.status {
					t.Fatalf("status %d %q, want %d", status, answer, c.status)
				}
				if status == http.StatusOK {
					var report struct{ SHA256 string }
					json.Unmarshal(answer, &report)
					// The scan route forwards the body decoded.
					if report.SHA256 != sha256Hex(plain) {
						t.Errorf("the upstream's report %q is not the %d bytes sent", answer, len(plain))
					}
					return
				}
				var e struct{ Rule string }
				if err := json.Unmarshal(answer, &e); err != nil || e.Rule != "eicar" {
					t.Errorf("the 403's body %q does not name rule eicar", answer)
				}
				s.checkNoCleanTruncation(t, id, nil)
			})
		}
	}
	s.checkNoLeak(t)
}

// trickle uploads pieces one at a time, each only once the previous one reached
// bodystream as a body message of its own, and ends the body after the last; the
// request ends early if the answer comes first. It returns the status and body.
func (s *stack) trickle(t *testing.T, proto harness.Protocol, path, id, encoding string, pieces [][]byte) (int, []byte) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	type answer struct {
		status int
		body   []byte
		err    error
	}
	answers := make(chan answer, 1)
	var send func([]byte) error
	var end func() error
	switch proto {
	case harness.H2:
		pr, pw := io.Pipe()
		defer pw.Close()
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.URL+path, pr)
		if err != nil {
			t.Fatal(err)
		}
		req.ContentLength = -1
		req.Header.Set("Content-Type", "application/octet-stream")
		req.Header.Set("X-Request-Id", id)
		if encoding != "" {
			req.Header.Set("Content-Encoding", encoding)
		}
		go func() {
			resp, err := s.transports[harness.H2].RoundTrip(req)
			if err != nil {
				answers <- answer{err: err}
				return
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			answers <- answer{resp.StatusCode, body, err}
		}()
		send = func(p []byte) error { _, err := pw.Write(p); return err }
		end = pw.Close
	default:
		// net/http's HTTP/1.1 client buffers a chunked body; a connection of our own
		// sends each piece as one chunk, now.
		u, err := url.Parse(s.URL)
		if err != nil {
			t.Fatal(err)
		}
		conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", u.Host)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		head := fmt.Sprintf("POST %s HTTP/1.1\r\nHost: %s\r\nTransfer-Encoding: chunked\r\nContent-Type: application/octet-stream\r\nX-Request-Id: %s\r\n", path, u.Host, id)
		if encoding != "" {
			head += "Content-Encoding: " + encoding + "\r\n"
		}
		io.WriteString(conn, head+"\r\n")
		go func() {
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				answers <- answer{err: err}
				return
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			answers <- answer{resp.StatusCode, body, err}
		}()
		send = func(p []byte) error { _, err := fmt.Fprintf(conn, "%x\r\n%s\r\n", len(p), p); return err }
		end = func() error { _, err := io.WriteString(conn, "0\r\n\r\n"); return err }
	}
	received := s.gauges(t, requestMessages)[requestMessages]
	for _, p := range pieces {
		before := received
		if err := send(p); err != nil {
			t.Fatalf("send %q: %v", p, err)
		}
		// Wait until bodystream received this piece, unless the answer came first.
		for ; received == before; received = s.gauges(t, requestMessages)[requestMessages] {
			select {
			case a := <-answers:
				if a.err != nil {
					t.Fatal(a.err)
				}
				return a.status, a.body
			default:
			}
			waitPoll()
		}
	}
	if err := end(); err != nil {
		t.Fatal(err)
	}
	a := <-answers
	if a.err != nil {
		t.Fatal(a.err)
	}
	return a.status, a.body
}

const streamsCancelled = `bodystream_streams_total{result="cancelled"}`

// zstdZeros is a zstd frame of n zero bytes: a few bytes per 128 KiB block.
func zstdZeros(t *testing.T, n int64) []byte {
	var b bytes.Buffer
	zw, err := zstd.NewWriter(&b, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1))
	if err != nil {
		t.Fatal(err)
	}
	zeros := make([]byte, 1<<20)
	for written := int64(0); written < n; written += int64(len(zeros)) {
		zw.Write(zeros)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// TestSlowStageMessageTimeout: in STREAMED mode Envoy waits for one reply per chunk,
// for at most message_timeout (200 ms here). The request pipeline is genuinely slow:
// a 30 KiB zstd body decodes to 1 GiB of zeros, which is hashed four ways and encoded
// again before the reply to its one chunk can go out. Envoy gives up: the client gets
// 504, the upstream no complete body, and bodystream ends the stream and frees its
// budget.
func TestSlowStageMessageTimeout(t *testing.T) {
	s := startStack(t, stackOptions{config: "slow-stage.yaml",
		envoyEdits: map[string]string{"message_timeout: 30s": "message_timeout: 0.2s"}})
	body := zstdZeros(t, 1<<30)
	const counter = "http.ingress.ext_proc.message_timeouts"
	for _, proto := range protocols {
		before, err := s.Admin.Stat(t.Context(), counter)
		if err != nil {
			t.Fatal(err)
		}
		cancelledBefore := s.gauges(t, streamsCancelled)[streamsCancelled]
		id := newRequestID(t)
		res, err := harness.Upload(t.Context(), s.transports[proto], harness.Request{URL: s.URL + "/streamed/sink", Body: bytes.NewReader(body),
			Length: int64(len(body)), Header: http.Header{"Content-Encoding": {"zstd"}, "X-Request-Id": {id}}})
		if err != nil {
			t.Fatal(err)
		}
		after, err := s.Admin.Stat(t.Context(), counter)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("over %s: %d %q; Envoy's %s went from %d to %d", proto, res.Status, res.Head, counter, before, after)
		if res.Status != http.StatusGatewayTimeout || after <= before {
			t.Errorf("over %s: status %d with %d message timeouts, want 504 from Envoy's message timeout", proto, res.Status, after-before)
		}
		s.checkNoCleanTruncation(t, id, nil)
		s.checkNoLeak(t)
		// Envoy ended the stream: bodystream counts it cancelled, not as an answer it gave.
		if n := s.gauges(t, streamsCancelled)[streamsCancelled] - cancelledBefore; n != 1 {
			t.Errorf("over %s: %s rose by %v, want 1", proto, streamsCancelled, n)
		}
	}
}
