package bench

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"hash"
	"io"
	"math/rand/v2"
	"mime"
	"os"
	"path/filepath"
	"strconv"
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
	// BodyFile is the contents of -file.
	BodyFile BodyKind = "file"
)

// body is one upload's request body: generated (or read) as the transport asks for
// it, hashed as it goes, never held whole.
type body struct {
	src         io.Reader
	closer      io.Closer
	contentType string
	size        int64

	// progress, if set, counts every byte read, for the progress line.
	progress *atomic.Int64

	mu   sync.Mutex
	n    int64
	hash hash.Hash
	sum  []byte
}

// newBody returns the body of upload number seed. Bodies of the same kind, size and
// seed are identical, so a run can be repeated.
func newBody(kind BodyKind, size int64, seed uint64, file string) (*body, error) {
	b := &body{size: size, hash: sha256.New()}
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
func (b *body) Read(p []byte) (int, error) {
	n, err := b.src.Read(p)
	if b.progress != nil {
		b.progress.Add(int64(n))
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

func (b *body) Close() error {
	if b.closer != nil {
		return b.closer.Close()
	}
	return nil
}

// sent returns how many bytes went out and their SHA-256, nil until all of them did.
func (b *body) sent() (int64, []byte) {
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

// jsonRecords is a pool of distinct log-like records that JSON bodies are drawn from
// at random. Drawing from a pool costs a copy per byte, where formatting each record
// would cost the client as much CPU as Envoy spends on it; the pool is far larger than
// deflate's 32 KiB window, so the compressor never sees the repetition.
var jsonRecords = sync.OnceValue(func() [][]byte {
	rng := rand.New(rand.NewPCG(1, 2))
	words := []string{"alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel",
		"india", "juliett", "kilo", "lima", "mike", "november", "oscar", "papa", "quebec",
		"romeo", "sierra", "tango", "uniform", "victor", "whiskey", "xray", "yankee", "zulu"}
	events := []string{"page_view", "add_to_cart", "checkout", "login", "logout", "search", "upload"}
	regions := []string{"eu-west-1", "eu-central-1", "us-east-1", "us-west-2", "ap-south-1"}
	hex := func(b []byte, n int) []byte {
		const digits = "0123456789abcdef"
		for range n {
			b = append(b, digits[rng.IntN(16)])
		}
		return b
	}
	records := make([][]byte, 8192)
	for i := range records {
		first, last := words[rng.IntN(len(words))], words[rng.IntN(len(words))]
		r := []byte(`{"id":"`)
		r = hex(r, 32)
		r = append(r, `","ts":"2026-11-`...)
		r = strconv.AppendInt(r, int64(10+rng.IntN(20)), 10)
		r = append(r, 'T')
		r = strconv.AppendInt(r, int64(10+rng.IntN(14)), 10)
		r = append(r, ':')
		r = strconv.AppendInt(r, int64(10+rng.IntN(50)), 10)
		r = append(r, ':')
		r = strconv.AppendInt(r, int64(10+rng.IntN(50)), 10)
		r = append(r, '.')
		r = strconv.AppendInt(r, int64(100+rng.IntN(900)), 10)
		r = append(r, `Z","user":{"id":`...)
		r = strconv.AppendInt(r, int64(rng.IntN(1_000_000)), 10)
		r = append(r, `,"name":"`+first+" "+last+`","email":"`+first+"."+last+`@example.com"},"event":"`...)
		r = append(r, events[rng.IntN(len(events))]...)
		r = append(r, `","path":"/products/`...)
		r = strconv.AppendInt(r, int64(rng.IntN(10_000)), 10)
		r = append(r, `","status":`...)
		r = strconv.AppendInt(r, int64([]int{200, 200, 200, 201, 204, 304, 404, 500}[rng.IntN(8)]), 10)
		r = append(r, `,"latency_ms":`...)
		r = strconv.AppendFloat(r, rng.Float64()*250, 'f', 2, 64)
		r = append(r, `,"region":"`...)
		r = append(r, regions[rng.IntN(len(regions))]...)
		r = append(r, `","trace":"`...)
		r = hex(r, 16)
		r = append(r, `","tags":["`+words[rng.IntN(len(words))]+`","`+words[rng.IntN(len(words))]+`"],"ok":`...)
		r = strconv.AppendBool(r, rng.IntN(10) != 0)
		r = append(r, '}')
		records[i] = r
	}
	return records
})

// jsonReader yields exactly size bytes of a JSON array: "[", records separated by
// ",\n", spaces to make up the size, "]". Bodies under 2 bytes are spaces only.
type jsonReader struct {
	rng     *rand.Rand
	records [][]byte
	left    int64  // bytes not yet taken into pending
	pending []byte // the rest of the current piece
	next    []byte // the record that follows the separator in pending
	state   jsonState
	opened  bool // "[" went out, so "]" must end the body
}

type jsonState int

const (
	jsonOpen  jsonState = iota // "[" next
	jsonFirst                  // the first record next, with no separator
	jsonMore                   // separator and record next
	jsonPad                    // spaces up to the closing bracket
	jsonDone
)

var jsonSpaces = []byte("                                                                ")

func newJSONReader(size int64, seed uint64) *jsonReader {
	return &jsonReader{rng: rand.New(rand.NewPCG(seed, 0x6a736f6e)), records: jsonRecords(), left: size}
}

func (r *jsonReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		if len(r.pending) == 0 && !r.advance() {
			break
		}
		c := copy(p[n:], r.pending)
		r.pending = r.pending[c:]
		n += c
	}
	if n == 0 && len(p) > 0 {
		return 0, io.EOF
	}
	return n, nil
}

// advance sets pending to the next piece, or returns false at the end of the body.
func (r *jsonReader) advance() bool {
	if r.next != nil {
		r.take(r.next)
		r.next = nil
		return true
	}
	switch r.state {
	case jsonOpen:
		if r.left < 2 {
			r.state = jsonPad // too short for brackets: spaces only
			return r.advance()
		}
		r.state, r.opened = jsonFirst, true
		r.take([]byte("["))
		return true
	case jsonFirst, jsonMore:
		rec := r.records[r.rng.IntN(len(r.records))]
		sep := []byte(",\n")
		if r.state == jsonFirst {
			sep = nil
		}
		// One byte stays for the "]".
		if int64(len(sep)+len(rec)) > r.left-1 {
			r.state = jsonPad
			return r.advance()
		}
		r.state = jsonMore
		if sep == nil {
			r.take(rec)
		} else {
			r.take(sep)
			r.next = rec
		}
		return true
	case jsonPad:
		closing := int64(0) // a body too short for "[" gets no "]" either
		if r.opened {
			closing = 1
		}
		switch {
		case r.left > closing:
			r.take(jsonSpaces[:min(int64(len(jsonSpaces)), r.left-closing)])
		case r.left == 1:
			r.take([]byte("]"))
		default:
			r.state = jsonDone
			return false
		}
		return true
	}
	return false
}

// take makes piece the pending bytes and counts them out of left.
func (r *jsonReader) take(piece []byte) {
	r.pending = piece
	r.left -= int64(len(piece))
}
