package stages

import (
	"fmt"
	"maps"
	"slices"
	"sync"

	"github.com/klauspost/compress/zstd"

	"github.com/bodystream/bodystream/stage"
)

// The content-codings the compress stage can offer. Each codec file registers its
// own, so that a new one slots in without the negotiation knowing it.

// encoding is one content-coding the compress stage can offer.
type encoding struct {
	// The levels the configuration may name for it, and the one it gets otherwise.
	minLevel, maxLevel, defaultLevel int
	// newEncoder returns the encoder for one configured level.
	newEncoder func(level int) (codingEncoder, error)
}

// codingEncoder is one configured coding of the compress stage; many bodies use it
// at once.
type codingEncoder interface {
	// transformer returns what compresses a body that begins with preview.
	transformer(preview []byte) stage.Transformer
	// memoryEstimate is the most memory one body holds in it (see memory.go).
	memoryEstimate() int64
}

var (
	encodingsMu sync.RWMutex
	encodings   = map[string]encoding{}
)

// registerEncoding makes a content-coding available to the compress stage under its
// content-encoding token. It panics when the name is taken.
func registerEncoding(name string, e encoding) {
	encodingsMu.Lock()
	defer encodingsMu.Unlock()
	if _, taken := encodings[name]; taken {
		panic(fmt.Sprintf("stages: encoding %q registered twice", name))
	}
	encodings[name] = e
}

func lookupEncoding(name string) (encoding, bool) {
	encodingsMu.RLock()
	defer encodingsMu.RUnlock()
	e, ok := encodings[name]
	return e, ok
}

func encodingNames() []string {
	encodingsMu.RLock()
	defer encodingsMu.RUnlock()
	return slices.Sorted(maps.Keys(encodings))
}

// gzipCoding offers a built gzip step as a coding, with its choice of Huffman-only
// coding for previews that its level would store.
type gzipCoding struct{ g *gzipPlanner }

func (c gzipCoding) transformer(preview []byte) stage.Transformer {
	if c.g.huffmanShrinksMore(preview) {
		return stage.TransformFunc(c.g.huffman.compress)
	}
	return stage.TransformFunc(c.g.writers.compress)
}

func (c gzipCoding) memoryEstimate() int64 { return c.g.MemoryEstimate(nil) }

// poolCoding offers a built zstd or brotli step's encoders as a coding.
type poolCoding struct {
	compress stage.TransformFunc
	memory   int64
}

func (c poolCoding) transformer([]byte) stage.Transformer { return c.compress }
func (c poolCoding) memoryEstimate() int64                { return c.memory }

func init() {
	registerEncoding("gzip", encoding{minLevel: 1, maxLevel: 9, defaultLevel: 1,
		newEncoder: func(level int) (codingEncoder, error) {
			g := newGzip()
			g.Level = level
			spec, err := g.Build()
			if err != nil {
				return nil, err
			}
			return gzipCoding{spec.(*gzipPlanner)}, nil
		}})
	// zstd levels are the reference implementation's (1–22, as Envoy's zstd
	// compressor takes them), mapped to klauspost's four: 1–2 fastest, 3–5 default,
	// 6–9 better, 10 and up best.
	registerEncoding("zstd", encoding{minLevel: 1, maxLevel: 22, defaultLevel: 1,
		newEncoder: func(level int) (codingEncoder, error) {
			z := newZstd()
			z.Level = zstd.EncoderLevelFromZstd(level).String()
			spec, err := z.Build()
			if err != nil {
				return nil, err
			}
			p := spec.(*zstdPlanner)
			return poolCoding{p.encoders.compress, p.MemoryEstimate(nil)}, nil
		}})
	// Brotli quality 0–11 (default 3) with Envoy's brotli compressor's window.
	registerEncoding("br", encoding{minLevel: 0, maxLevel: maxBrotliQuality, defaultLevel: 3,
		newEncoder: func(level int) (codingEncoder, error) {
			b := newBrotli()
			b.Quality = level
			spec, err := b.Build()
			if err != nil {
				return nil, err
			}
			p := spec.(*brotliPlanner)
			return poolCoding{p.writers.compress, p.MemoryEstimate(nil)}, nil
		}})
}
