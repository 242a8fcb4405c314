package stages

import (
	"fmt"
	"io"

	"github.com/andybalholm/brotli"

	"github.com/bodystream/bodystream/stage"
)

func init() { register("brotli", newBrotli) }

// Brotli window bits (RFC 7932 section 9.1): the window is 2^bits - 16 bytes. Above
// 24 is the large-window extension, which HTTP clients do not decode.
const (
	minBrotliWindowBits = 10
	maxBrotliWindowBits = 24
	maxBrotliQuality    = 11
)

// Brotli compresses the body with brotli and sets content-encoding: br.
type Brotli struct {
	// Quality is 0 (fastest) to 11 (smallest, and hundreds of times slower). The
	// default 3 is Envoy's brotli compressor's default.
	Quality int `yaml:"quality"`
	// WindowBits is the base-2 logarithm of the back-reference window, 10 to 24; the
	// default 18 (256 KiB) is Envoy's. Every decoder of the output holds the window.
	WindowBits  int `yaml:"window_bits"`
	SkipOptions `yaml:",inline"`
}

// newBrotli returns the defaults, so that the configuration only overrides what it
// names.
func newBrotli() Brotli {
	return Brotli{Quality: 3, WindowBits: 18, SkipOptions: defaultSkipOptions()}
}

// Build checks the options and returns the ready spec.
func (b Brotli) Build() (stage.Spec, error) {
	if b.Quality < 0 || b.Quality > maxBrotliQuality {
		return nil, fmt.Errorf("quality: must be between 0 and %d, got %d", maxBrotliQuality, b.Quality)
	}
	if b.WindowBits < minBrotliWindowBits || b.WindowBits > maxBrotliWindowBits {
		return nil, fmt.Errorf("window_bits: must be between %d and %d, got %d", minBrotliWindowBits, maxBrotliWindowBits, b.WindowBits)
	}
	skip, err := b.SkipOptions.checked()
	if err != nil {
		return nil, err
	}
	b.SkipOptions = skip
	p := &brotliPlanner{Brotli: b}
	p.writers = newEncoderPool(func(dst io.Writer) (*brotli.Writer, error) {
		return brotli.NewWriterOptions(dst, brotli.WriterOptions{Quality: b.Quality, LGWin: b.WindowBits}), nil
	})
	return p, nil
}

// brotliPlanner is a built brotli step.
type brotliPlanner struct {
	Brotli
	writers *encoderPool[*brotli.Writer]
}

func (b *brotliPlanner) Name() string { return "brotli" }

func (b *brotliPlanner) PreviewSize(m *stage.Message) int { return b.previewSize(m) }

// Plan compresses the body unless it is one not to compress.
func (b *brotliPlanner) Plan(m *stage.Message, preview []byte) (stage.Step, error) {
	if b.skips(m, preview) {
		return stage.Step{}, nil
	}
	return compressStep("br", b.writers.compress), nil
}
