package stages

import (
	"fmt"
	"io"

	"github.com/klauspost/compress/gzip"

	"github.com/bodystream/bodystream/stage"
)

func init() { register("gzip", newGzip) }

// Gzip compresses the body with gzip and sets content-encoding: gzip.
type Gzip struct {
	// Level is the deflate level, from 1 (fastest, the default: about 410 MB/s and
	// 5× on JSON per core) to 9 (smallest).
	Level int `yaml:"level"`
	// Concurrency is how many cores compress one body: above 1, blocks of 256 KiB
	// are deflated in parallel (each with the 32 KiB before it as dictionary) into
	// one gzip member. Worth it for large bodies when cores are idle; each core
	// adds its block buffers and deflate state to the body's memory.
	Concurrency int `yaml:"concurrency"`
	SkipOptions `yaml:",inline"`
}

// newGzip returns the defaults, so that the configuration only overrides what it
// names.
func newGzip() Gzip {
	return Gzip{Level: gzip.BestSpeed, Concurrency: 1, SkipOptions: defaultSkipOptions()}
}

// Build checks the options and returns the ready spec.
func (g Gzip) Build() (stage.Spec, error) {
	if g.Level < gzip.BestSpeed || g.Level > gzip.BestCompression {
		return nil, fmt.Errorf("level: must be between %d and %d, got %d", gzip.BestSpeed, gzip.BestCompression, g.Level)
	}
	if g.Concurrency < 1 || g.Concurrency > maxConcurrency {
		return nil, fmt.Errorf("concurrency: must be between 1 and %d, got %d", maxConcurrency, g.Concurrency)
	}
	skip, err := g.SkipOptions.checked()
	if err != nil {
		return nil, err
	}
	g.SkipOptions = skip
	p := &gzipPlanner{Gzip: g}
	if g.Concurrency == 1 {
		p.writers = newEncoderPool(func(dst io.Writer) (*gzip.Writer, error) {
			return gzip.NewWriterLevel(dst, g.Level)
		})
		p.huffman = newEncoderPool(func(dst io.Writer) (*gzip.Writer, error) {
			return gzip.NewWriterLevel(dst, gzip.HuffmanOnly)
		})
	} else {
		p.writers = newEncoderPool(func(dst io.Writer) (*parallelGzip, error) {
			return newParallelGzip(dst, g.Level, g.Concurrency)
		})
		p.huffman = newEncoderPool(func(dst io.Writer) (*parallelGzip, error) {
			return newParallelGzip(dst, gzip.HuffmanOnly, g.Concurrency)
		})
	}
	return p, nil
}

// gzipPlanner is a built gzip step.
type gzipPlanner struct {
	Gzip
	writers compressor
	// huffman encodes without matches: for bodies that Level would store.
	huffman compressor
}

const (
	// lastStoringLevel is the highest level whose encoder stores a block in which it
	// finds no match; levels above it Huffman-code such blocks.
	lastStoringLevel = 6
	// minHuffmanTrial is the shortest preview worth the trial: on fewer bytes the
	// headers and Huffman tables weigh more than the body.
	minHuffmanTrial = 1 << 10
)

func (g *gzipPlanner) Name() string { return "gzip" }

func (g *gzipPlanner) PreviewSize(m *stage.Message) int { return g.previewSize(m) }

// Plan compresses the body unless it is one not to compress.
func (g *gzipPlanner) Plan(m *stage.Message, preview []byte) (stage.Step, error) {
	if g.skips(m, preview) {
		return stage.Step{}, nil
	}
	if g.huffmanShrinksMore(preview) {
		return compressStep("gzip", g.huffman.compress), nil
	}
	return compressStep("gzip", g.writers.compress), nil
}

// huffmanShrinksMore reports whether Huffman coding alone makes the preview smaller
// than Level does. klauspost's levels 1 to 6 store a block in which they find no
// match, by design, for speed on incompressible data. Text over a small alphabet
// (base64, hex: a data URI, a JSON field holding a file) has no matches either but
// codes in 6 or 4 bits a byte, so that Level sends it 0.01% larger where zlib
// (Envoy's compressor) and HuffmanOnly send it 25% or 50% smaller. The trial encodes
// the preview twice, about 40 µs for 8 KiB, once per body.
func (g *gzipPlanner) huffmanShrinksMore(preview []byte) bool {
	preview = preview[:min(len(preview), g.PreviewBytes)]
	if g.Level > lastStoringLevel || len(preview) < minHuffmanTrial {
		return false
	}
	atLevel, err := g.writers.encodedSize(preview)
	if err != nil {
		return false
	}
	huffman, err := g.huffman.encodedSize(preview)
	return err == nil && huffman < atLevel
}
