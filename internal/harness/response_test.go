package harness

import (
	"bytes"
	"crypto/sha256"
	"strings"
	"testing"

	"github.com/klauspost/compress/gzip"
)

func TestVerify(t *testing.T) {
	sent := readBody(t, BodyJSON, 200<<10, 1)
	sum := sha256.Sum256(sent)
	size := int64(len(sent))

	wrongByte := bytes.Clone(sent)
	wrongByte[123456] ^= 0x01

	for _, tc := range []struct {
		name     string
		body     []byte
		encoding string
		wantErr  string // "" for a match
	}{
		{"identity", sent, "", ""},
		{"gzip", gzipped(t, sent), "gzip", ""},
		{"gzip, upper case", gzipped(t, sent), "GZIP", ""},
		{"one wrong byte", wrongByte, "", "differs"},
		{"one wrong byte, gzip", gzipped(t, wrongByte), "gzip", "differs"},
		{"one byte short", sent[:len(sent)-1], "", "bytes after undoing"},
		{"one byte more", append(bytes.Clone(sent), 'x'), "", "bytes after undoing"},
		{"gzip, truncated", gzipped(t, sent)[:1000], "gzip", "unexpected EOF"},
		{"gzip, bytes after the stream", append(gzipped(t, sent), 0, 0, 0), "gzip", "after the end of the gzip stream"},
		{"not gzip", sent, "gzip", "gzip"},
		{"unknown encoding", sent, "br", "only gzip and zstd"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ReadResponse(bytes.NewReader(tc.body), tc.encoding, nil)
			if err == nil {
				err = got.Verify(size, sum[:])
			}
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("want a match, got %v", err)
			case tc.wantErr != "" && err == nil:
				t.Errorf("want an error about %q, got a match", tc.wantErr)
			case tc.wantErr != "" && !strings.Contains(err.Error(), tc.wantErr):
				t.Errorf("want an error about %q, got %v", tc.wantErr, err)
			}
			if err == nil && got.Wire != int64(len(tc.body)) {
				t.Errorf("wire bytes %d, want %d", got.Wire, len(tc.body))
			}
		})
	}
}

func TestVerifyNeedsTheWholeUpload(t *testing.T) {
	got, err := ReadResponse(strings.NewReader("abc"), "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := got.Verify(3, nil); err == nil || !strings.Contains(err.Error(), "not sent completely") {
		t.Errorf("an upload without a sum verified: %v", err)
	}
}

func gzipped(t *testing.T, data []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&b, gzip.BestSpeed)
	if _, err := zw.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}
