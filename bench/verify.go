package bench

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

// received is what came back for one upload: the response body as it came over the
// wire and after undoing its content-encoding.
type received struct {
	encoding string // the response's content-encoding, "" for none
	wire     int64  // response body bytes as received
	decoded  int64  // after undoing the encoding
	sum      []byte // SHA-256 of the decoded bytes
	// wireEnd is how the response body ended at the HTTP layer: io.EOF when its
	// framing said it was complete, else the transport's error. A short body with a
	// clean end is a truncation passed off as complete; one with an error is a
	// failure the client saw.
	wireEnd error
}

// copyBufferSize is the one buffer a response is read through.
const copyBufferSize = 64 << 10

// readResponse reads body to its end, undoing encoding while it hashes, and adds
// every wire byte to progress as it arrives. It holds one buffer and, for gzip, one
// decompressor, whatever the body's size.
func readResponse(body io.Reader, encoding string, progress *atomic.Int64) (received, error) {
	r := received{encoding: strings.ToLower(strings.TrimSpace(encoding))}
	wire := &countingReader{r: body, progress: progress}
	defer func() { r.wireEnd = wire.end }()
	// gzip reads through this bufio.Reader rather than one of its own, so that what
	// follows the gzip stream stays here to be found.
	buffered := bufio.NewReaderSize(wire, copyBufferSize)
	var src io.Reader = buffered
	switch r.encoding {
	case "", "identity":
		r.encoding = ""
	case "gzip":
		zr, err := gzip.NewReader(buffered)
		if err != nil {
			r.wire = wire.n
			return r, fmt.Errorf("response: content-encoding gzip: %w", err)
		}
		// One gzip member: a second one would be a concatenation the route never makes.
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
		return r, fmt.Errorf("response: content-encoding %q: the bench can undo only gzip and zstd", encoding)
	}
	h := sha256.New()
	buf := make([]byte, copyBufferSize)
	n, err := io.CopyBuffer(h, src, buf)
	r.decoded = n
	if err == nil && r.encoding != "" {
		if extra, _ := io.CopyBuffer(io.Discard, buffered, buf); extra > 0 {
			err = fmt.Errorf("%d bytes after the end of the %s stream", extra, r.encoding)
		}
	}
	r.wire = wire.n
	if err != nil {
		return r, fmt.Errorf("response: after %d bytes: %w", n, err)
	}
	r.sum = h.Sum(nil)
	return r, nil
}

// verify reports how got differs from the size bytes with SHA-256 sum that were sent.
func verify(size int64, sum []byte, got received) error {
	switch {
	case sum == nil:
		return fmt.Errorf("the request body was not sent completely")
	case got.decoded != size:
		return fmt.Errorf("response has %d bytes after undoing content-encoding %q, sent %d", got.decoded, got.encoding, size)
	case !bytes.Equal(got.sum, sum):
		return fmt.Errorf("response differs from the upload: sha256 %s, sent %s", hex.EncodeToString(got.sum), hex.EncodeToString(sum))
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
