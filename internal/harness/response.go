package harness

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"strings"
	"sync/atomic"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// Received is a response body as it came over the wire and after undoing its
// content-encoding.
type Received struct {
	Encoding string // the response's content-encoding, "" for none
	Wire     int64  // response body bytes as received
	Decoded  int64  // after undoing the encoding
	Sum      []byte // SHA-256 of the decoded bytes; nil unless the body decoded to its end
	// Head is the first HeadSize decoded bytes, for messages and small answers (an
	// error's JSON, the echo's /sink report).
	Head []byte
	// WireEnd is how the body ended at the HTTP layer: io.EOF when its framing said it
	// was complete, else the transport's error. A short body with a clean end is a
	// truncation passed off as complete; one with an error is a failure the client
	// saw.
	WireEnd error
}

// HeadSize is how much of a decoded body Received.Head keeps.
const HeadSize = 4 << 10

// copyBufferSize is the one buffer a response is read through.
const copyBufferSize = 64 << 10

// EndedCleanly reports whether the HTTP framing said the body was complete.
func (r Received) EndedCleanly() bool { return r.WireEnd == io.EOF }

// ReadResponse reads body to its end, undoing encoding while it hashes, and adds every
// wire byte to progress (if not nil) as it arrives. It holds one buffer and one
// decompressor, whatever the body's size.
func ReadResponse(body io.Reader, encoding string, progress *atomic.Int64) (r Received, err error) {
	r.Encoding = strings.ToLower(strings.TrimSpace(encoding))
	wire := &countingReader{r: body, progress: progress}
	// Named results: the deferred write must reach what the caller gets.
	defer func() { r.WireEnd = wire.end }()
	// gzip reads through this bufio.Reader rather than one of its own, so that what
	// follows the gzip stream stays here to be found.
	buffered := bufio.NewReaderSize(wire, copyBufferSize)
	var src io.Reader = buffered
	switch r.Encoding {
	case "", "identity":
		r.Encoding = ""
	case "gzip":
		zr, err := gzip.NewReader(buffered)
		if err != nil {
			r.Wire = wire.n
			return r, fmt.Errorf("response: content-encoding gzip: %w", err)
		}
		// One gzip member: a second one would be a concatenation no route makes.
		zr.Multistream(false)
		src = zr
	case "zstd":
		zr, err := zstd.NewReader(buffered, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true))
		if err != nil {
			return r, fmt.Errorf("response: content-encoding zstd: %w", err)
		}
		defer zr.Close()
		src = zr
	default:
		return r, fmt.Errorf("response: content-encoding %q: only gzip and zstd can be undone", encoding)
	}
	h := sha256.New()
	head := &prefixWriter{limit: HeadSize}
	buf := make([]byte, copyBufferSize)
	n, err := io.CopyBuffer(io.MultiWriter(h, head), src, buf)
	r.Decoded, r.Head = n, head.buf
	if err == nil && r.Encoding != "" {
		if extra, _ := io.CopyBuffer(io.Discard, buffered, buf); extra > 0 {
			err = fmt.Errorf("%d bytes after the end of the %s stream", extra, r.Encoding)
		}
	}
	r.Wire = wire.n
	if err != nil {
		return r, fmt.Errorf("response: after %d bytes: %w", n, err)
	}
	r.Sum = h.Sum(nil)
	return r, nil
}

// Verify reports how the body differs from the size bytes with SHA-256 sum that were
// sent (Body.Sent's results).
func (r Received) Verify(size int64, sum []byte) error {
	switch {
	case sum == nil:
		return fmt.Errorf("the request body was not sent completely")
	case r.Decoded != size:
		return fmt.Errorf("response has %d bytes after undoing content-encoding %q, sent %d", r.Decoded, r.Encoding, size)
	case !bytes.Equal(r.Sum, sum):
		return fmt.Errorf("response differs from the upload: sha256 %s, sent %s", hex.EncodeToString(r.Sum), hex.EncodeToString(sum))
	}
	return nil
}

type countingReader struct {
	r        io.Reader
	n        int64
	progress *atomic.Int64
	end      error // the first error the body returned, io.EOF for a clean end
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	if err != nil && c.end == nil {
		c.end = err
	}
	if c.progress != nil {
		c.progress.Add(int64(n))
	}
	return n, err
}

// prefixWriter keeps the first limit bytes written to it and drops the rest.
type prefixWriter struct {
	buf   []byte
	limit int
}

func (w *prefixWriter) Write(p []byte) (int, error) {
	if room := w.limit - len(w.buf); room > 0 {
		w.buf = append(w.buf, p[:min(room, len(p))]...)
	}
	return len(p), nil
}
