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
	Level       int `yaml:"level"`
	SkipOptions `yaml:",inline"`
}

// newGzip returns the defaults, so that the configuration only overrides what it
// names.
func newGzip() Gzip {
	return Gzip{Level: gzip.BestSpeed, SkipOptions: defaultSkipOptions()}
}

// Build checks the options and returns the ready spec.
func (g Gzip) Build() (stage.Spec, error) {
	if g.Level < gzip.BestSpeed || g.Level > gzip.BestCompression {
		return nil, fmt.Errorf("level: must be between %d and %d, got %d", gzip.BestSpeed, gzip.BestCompression, g.Level)
	}
	skip, err := g.SkipOptions.checked()
	if err != nil {
		return nil, err
	}
	g.SkipOptions = skip
	p := &gzipPlanner{Gzip: g}
	p.writers = newEncoderPool(func(dst io.Writer) (*gzip.Writer, error) {
		return gzip.NewWriterLevel(dst, g.Level)
	})
	return p, nil
}

// gzipPlanner is a built gzip step.
type gzipPlanner struct {
	Gzip
	writers *encoderPool[*gzip.Writer]
}

func (g *gzipPlanner) Name() string { return "gzip" }

func (g *gzipPlanner) PreviewSize(m *stage.Message) int { return g.previewSize(m) }

// Plan compresses the body unless it is one not to compress.
func (g *gzipPlanner) Plan(m *stage.Message, preview []byte) (stage.Step, error) {
	if g.skips(m, preview) {
		return stage.Step{}, nil
	}
	return compressStep("gzip", g.writers.compress), nil
}
