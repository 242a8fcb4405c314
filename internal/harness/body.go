package harness

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"hash"
	"io"
	"mime"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
)

// BodyKind is what an upload carries.
type BodyKind string

const (
	// BodyRandom is incompressible bytes, like the video the users upload.
	BodyRandom BodyKind = "random"
	// BodyJSON is a JSON array of log-like records, about 5× compressible with gzip -1.
	BodyJSON BodyKind = "json"
	// BodyFile is the contents of a file.
	BodyFile BodyKind = "file"
)

// Body is one upload's request body: generated (or read) as the transport asks for
// it, hashed as it goes, never held whole.
type Body struct {
	// Progress, if set, counts every byte read, for a progress line.
	Progress *atomic.Int64

	src         io.Reader
	closer      io.Closer
	contentType string
	size        int64

	mu   sync.Mutex
	n    int64
	hash hash.Hash
	sum  []byte
}

// NewBody returns size bytes of kind, the body of upload number seed; file is read
// for BodyFile. Bodies of the same kind, size and seed are identical, so a run can be
// repeated.
func NewBody(kind BodyKind, size int64, seed uint64, file string) (*Body, error) {
	b := &Body{size: size, hash: sha256.New()}
	switch kind {
	case BodyRandom:
		b.src, b.contentType = &randomReader{state: seed*0x9e3779b97f4a7c15 + 1, left: size}, "video/mp4"
	case BodyJSON:
		b.src, b.contentType = newJSONReader(size, seed), "application/json"
	case BodyFile:
		f, err := os.Open(file)
		if err != nil {
			return nil, fmt.Errorf("body: %w", err)
		}
		b.src, b.closer = io.LimitReader(f, size), f
		b.contentType = mime.TypeByExtension(filepath.Ext(file))
		if b.contentType == "" {
			b.contentType = "application/octet-stream"
		}
	default:
		return nil, fmt.Errorf("body: unknown kind %q", kind)
	}
	return b, nil
}

// Read hashes what it returns. The sum is taken as soon as size bytes went out: the
// HTTP transport need not read on to EOF when it knows the content length.
func (b *Body) Read(p []byte) (int, error) {
	n, err := b.src.Read(p)
	if b.Progress != nil {
		b.Progress.Add(int64(n))
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if n > 0 {
		b.hash.Write(p[:n])
		b.n += int64(n)
	}
	if b.n == b.size && b.sum == nil {
		b.sum = b.hash.Sum(nil)
	}
	if err == io.EOF && b.n < b.size {
		return n, fmt.Errorf("body: source ended after %d of %d bytes: %w", b.n, b.size, io.ErrUnexpectedEOF)
	}
	return n, err
}

// Close closes the file of a BodyFile body.
func (b *Body) Close() error {
	if b.closer != nil {
		return b.closer.Close()
	}
	return nil
}

// ContentType is the media type that fits the body's kind.
func (b *Body) ContentType() string { return b.contentType }

// Sent returns how many bytes went out and their SHA-256, nil until all of them did.
func (b *Body) Sent() (int64, []byte) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.size == 0 && b.sum == nil {
		b.sum = b.hash.Sum(nil) // an empty body is sent once it is asked for, or not
	}
	return b.n, b.sum
}

// randomReader yields left bytes of wyrand output: about 10 GB/s, so that the
// client's own CPU goes to HTTP and hashing, not to making bytes up.
type randomReader struct {
	state uint64
	left  int64
}

func (r *randomReader) Read(p []byte) (int, error) {
	if r.left <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > r.left {
		p = p[:r.left]
	}
	i := 0
	for ; i+8 <= len(p); i += 8 {
		binary.LittleEndian.PutUint64(p[i:], r.next())
	}
	if i < len(p) {
		var tail [8]byte
		binary.LittleEndian.PutUint64(tail[:], r.next())
		copy(p[i:], tail[:])
	}
	r.left -= int64(len(p))
	return len(p), nil
}

func (r *randomReader) next() uint64 {
	r.state += 0xa0761d6478bd642f
	hi, lo := mul64(r.state, r.state^0xe7037ed1a0b428db)
	return hi ^ lo
}

func mul64(a, b uint64) (hi, lo uint64) {
	const mask32 = 1<<32 - 1
	a0, a1 := a&mask32, a>>32
	b0, b1 := b&mask32, b>>32
	w0 := a0 * b0
	t := a1*b0 + w0>>32
	w1 := t&mask32 + a0*b1
	return a1*b1 + t>>32 + w1>>32, a * b
}
