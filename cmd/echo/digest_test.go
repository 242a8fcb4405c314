package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

func TestDigestLogsWhatArrived(t *testing.T) {
	data := randomBytes(300_000)
	plain := sha256.Sum256(data)
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(data)
	zw.Close()
	enc, _ := zstd.NewWriter(nil)
	zs := enc.EncodeAll(data, nil)
	enc.Close()

	tests := []struct {
		name     string
		encoding string
		body     []byte
		want     []string
	}{
		{"plain", "", data, []string{"body_end=eof", "sha256=" + hex.EncodeToString(plain[:])}},
		{"gzip", "gzip", gz.Bytes(), []string{"body_end=eof", fmt.Sprintf("decoded_bytes=%d decoded_sha256=%x", len(data), plain)}},
		{"zstd", "zstd", zs, []string{"body_end=eof", fmt.Sprintf("decoded_bytes=%d decoded_sha256=%x", len(data), plain)}},
		{"truncated gzip that ended cleanly", "gzip", gz.Bytes()[:gz.Len()/2], []string{"body_end=eof", "decode_err=", "unexpected EOF"}},
	}
	s := startEcho(t, "-digest")
	for i, tt := range tests {
		req := newRequest(t, t.Context(), s.url(fmt.Sprintf("/digest/%d/echo", i)), tt.body, false)
		req.Header.Set("X-Request-Id", fmt.Sprintf("rid-%d", i))
		if tt.encoding != "" {
			req.Header.Set("Content-Encoding", tt.encoding)
		}
		if _, got := do(t, s.h2c, req); !bytes.Equal(got, tt.body) {
			t.Fatalf("%s: echo returned %d bytes, want the %d sent", tt.name, len(got), len(tt.body))
		}
	}
	if err := s.stop(); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(s.stderr.String(), "\n")
	for i, tt := range tests {
		var line string
		for _, l := range lines {
			if strings.Contains(l, fmt.Sprintf("request_id=rid-%d ", i)) {
				line = l
			}
		}
		for _, want := range tt.want {
			if !strings.Contains(line, want) {
				t.Errorf("%s: line %q has no %q", tt.name, line, want)
			}
		}
	}
}

// TestDigestOfBrokenBody: a body that ends with an error is logged as such, and the
// decoder goroutine ends with it.
func TestDigestOfBrokenBody(t *testing.T) {
	d := newBodyDigest("gzip")
	d.read([]byte{0x1f, 0x8b}, nil)
	d.read(nil, io.ErrUnexpectedEOF)
	line := fmt.Sprintln(d.attrs()...)
	if !strings.Contains(line, "body_end unexpected EOF") || !strings.Contains(line, "decode_err") {
		t.Errorf("attrs %q: want body_end with the read error and a decode error", line)
	}
}
