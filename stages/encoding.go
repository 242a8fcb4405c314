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
	newEncoder func(level int) (encoder, error)
}

// encoder compresses one body per Transform call; it may be used by many bodies at
// once.
type encoder interface {
	stage.Transformer
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

// specEncoder adapts a built compressor step to encoder.
type specEncoder struct {
	stage.TransformFunc
	memory int64
}

func (e specEncoder) memoryEstimate() int64 { return e.memory }

func init() {
	registerEncoding("gzip", encoding{minLevel: 1, maxLevel: 9, defaultLevel: 1,
		newEncoder: func(level int) (encoder, error) {
			spec, err := Gzip{Level: level}.Build()
			if err != nil {
				return nil, err
			}
			g := spec.(*gzipPlanner)
			return specEncoder{g.compress, g.MemoryEstimate(nil)}, nil
		}})
	// zstd levels are the reference implementation's (1–22, as Envoy's zstd
	// compressor takes them), mapped to klauspost's four: 1–2 fastest, 3–5 default,
	// 6–9 better, 10 and up best.
	registerEncoding("zstd", encoding{minLevel: 1, maxLevel: 22, defaultLevel: 1,
		newEncoder: func(level int) (encoder, error) {
			spec, err := Zstd{Level: zstd.EncoderLevelFromZstd(level).String(), Window: defaultZstdWindow}.Build()
			if err != nil {
				return nil, err
			}
			z := spec.(*zstdPlanner)
			return specEncoder{z.compress, z.MemoryEstimate(nil)}, nil
		}})
}
