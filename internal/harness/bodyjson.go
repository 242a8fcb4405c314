package harness

import (
	"io"
	"math/rand/v2"
	"strconv"
	"sync"
)

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
