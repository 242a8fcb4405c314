package e2e

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// protocol is how the client talks to Envoy.
type protocol string

const (
	h1Length  protocol = "http1-content-length"
	h1Chunked protocol = "http1-chunked"
	h2        protocol = "h2c"
)

var clients = map[protocol]*http.Client{
	h1Length:  {Transport: &http.Transport{DisableCompression: true}},
	h1Chunked: {Transport: &http.Transport{DisableCompression: true}},
	h2:        {Transport: h2cTransport()},
}

func h2cTransport() *http.Transport {
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	return &http.Transport{Protocols: &p, DisableCompression: true}
}

// body generates n bytes as they are read, and hashes what it hands out.
type body struct {
	remaining int64
	random    *rand.ChaCha8
	text      []byte
	offset    int
	sum       hash.Hash
}

func newBody(kind string, n int64, seed byte) *body {
	b := &body{remaining: n, sum: sha256.New()}
	if kind == "random" {
		b.random = rand.NewChaCha8([32]byte{seed})
	} else {
		// JSON lines with varied values: compresses about 4-6x like real logs, not
		// 100x like one repeated line (which would trip the decompression ratio guard).
		words := []string{"upload", "video", "chunk", "retry", "ok", "error", "media", "frame", "user", "session"}
		numbers := rand.New(rand.NewChaCha8([32]byte{seed, 1}))
		var t bytes.Buffer
		for i := 0; t.Len() < 4<<20; i++ {
			fmt.Fprintf(&t, `{"seq": %d, "user": "u%d", "event": %q, "bytes": %d, "ms": %.3f, "ok": %v}`+"\n",
				i, numbers.IntN(100000), words[numbers.IntN(len(words))], numbers.IntN(1<<30), numbers.Float64()*1000, numbers.IntN(2) == 0)
		}
		b.text = t.Bytes()
	}
	return b
}

func (b *body) Read(p []byte) (int, error) {
	if b.remaining == 0 {
		return 0, io.EOF
	}
	p = p[:min(int64(len(p)), b.remaining)]
	if b.random != nil {
		b.random.Read(p)
	} else {
		for i := range p {
			p[i] = b.text[b.offset]
			b.offset = (b.offset + 1) % len(b.text)
		}
	}
	b.remaining -= int64(len(p))
	b.sum.Write(p)
	return len(p), nil
}

func (b *body) digest() string { return hex.EncodeToString(b.sum.Sum(nil)) }

// result is what came back, decoded.
type result struct {
	status   int
	encoding string
	size     int64
	digest   string
	header   http.Header
	trailer  http.Header
	raw      []byte // the first KiB of the body as received, for messages
}

// upload sends size bytes of kind to path and reads the response, undoing its
// content-encoding while hashing it.
func upload(t *testing.T, url string, proto protocol, kind string, size int64, header http.Header) (*body, result) {
	t.Helper()
	b := newBody(kind, size, byte(size))
	req, err := http.NewRequest(http.MethodPost, url, b)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	switch proto {
	case h1Chunked:
		req.ContentLength = -1 // unknown length: chunked transfer coding
		req.Body = io.NopCloser(b)
	default:
		req.ContentLength = size
	}
	if size == 0 && proto != h1Chunked {
		req.Body = http.NoBody
	}
	resp, err := clients[proto].Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", proto, url, err)
	}
	defer resp.Body.Close()
	return b, readResult(t, resp)
}

func readResult(t *testing.T, resp *http.Response) result {
	t.Helper()
	r := result{status: resp.StatusCode, encoding: resp.Header.Get("Content-Encoding"), header: resp.Header}
	var head bytes.Buffer
	wire := &endReader{r: resp.Body}
	var reader io.Reader = io.TeeReader(wire, &limitedBuffer{&head, 1024})
	switch r.encoding {
	case "":
	case "gzip":
		zr, err := gzip.NewReader(reader)
		if err != nil {
			t.Fatalf("response gzip: %v", err)
		}
		reader = zr
	case "zstd":
		zr, err := zstd.NewReader(reader)
		if err != nil {
			t.Fatalf("response zstd: %v", err)
		}
		defer zr.Close()
		reader = zr
	default:
		t.Fatalf("unexpected content-encoding %q", r.encoding)
	}
	sum := sha256.New()
	n, err := io.Copy(sum, reader)
	if err != nil && r.status == http.StatusOK {
		// "unexpected EOF" alone cannot tell a reset from a truncation: the HTTP
		// layer's own end can.
		if wire.end == io.EOF {
			t.Fatalf("TRUNCATED: the response ended cleanly after %d bytes but does not decode: %v (first bytes %q)", wire.n, err, head.Bytes())
		}
		t.Fatalf("reading response: the stack reset it after %d bytes: %v (first bytes %q)", wire.n, err, head.Bytes())
	}
	r.size, r.digest, r.raw, r.trailer = n, hex.EncodeToString(sum.Sum(nil)), head.Bytes(), resp.Trailer
	return r
}

// endReader notes how a response body ended at the HTTP layer: io.EOF when its
// framing said it was complete, else the transport's error.
type endReader struct {
	r   io.Reader
	n   int64
	end error
}

func (e *endReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	e.n += int64(n)
	if err != nil && e.end == nil {
		e.end = err
	}
	return n, err
}

type limitedBuffer struct {
	buf   *bytes.Buffer
	limit int
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if room := l.limit - l.buf.Len(); room > 0 {
		l.buf.Write(p[:min(room, len(p))])
	}
	return len(p), nil
}

// sinkReport is the echo's /sink answer: what the upstream received.
type sinkReport struct {
	Bytes           int64             `json:"bytes"`
	SHA256          string            `json:"sha256"`
	ContentEncoding string            `json:"content_encoding"`
	Trailers        map[string]string `json:"trailers"`
	Headers         map[string]string `json:"headers"`
}

func sink(t *testing.T, url string, proto protocol, kind string, size int64, header http.Header) (*body, sinkReport) {
	t.Helper()
	b := newBody(kind, size, 7)
	req, err := http.NewRequest(http.MethodPost, url, b)
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = size
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := clients[proto].Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var raw bytes.Buffer
	var reader io.Reader = io.TeeReader(resp.Body, &raw)
	if resp.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(reader)
		if err != nil {
			t.Fatal(err)
		}
		reader = zr
	}
	var report sinkReport
	if err := json.NewDecoder(reader).Decode(&report); err != nil {
		t.Fatalf("sink answer (status %d): %v: %q", resp.StatusCode, err, raw.String())
	}
	return b, report
}

// envoyCounter reads one counter from Envoy's admin stats.
func envoyCounter(t *testing.T, adminURL, name string) int64 {
	t.Helper()
	resp, err := http.Get(adminURL + "/stats?filter=^" + strings.ReplaceAll(name, ".", "\\.") + "$")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	var value int64
	line := strings.TrimSpace(string(data))
	if line == "" {
		return 0
	}
	if _, err := fmt.Sscanf(line, name+": %d", &value); err != nil {
		t.Fatalf("stat %s: %q: %v", name, line, err)
	}
	return value
}

// jsonUnmarshalGzip decodes a sink report that readResult already consumed: it
// re-reads nothing, so the report is recovered from the raw prefix.
func jsonUnmarshalGzip(got result, _ *http.Response, v any) error {
	raw := got.raw
	if got.encoding == "gzip" {
		zr, err := gzip.NewReader(bytes.NewReader(raw))
		if err != nil {
			return err
		}
		if raw, err = io.ReadAll(zr); err != nil {
			return err
		}
	}
	return json.Unmarshal(raw, v)
}
