package stages

import (
	"fmt"
	"io"
	"strings"

	"github.com/klauspost/compress/zstd"

	"github.com/bodystream/bodystream/stage"
)

func init() { register("zstd", newZstd) }

const (
	defaultZstdWindow = 1 << 20
	maxZstdWindow     = 8 << 20
)

// Zstd compresses the body with zstd and sets content-encoding: zstd.
type Zstd struct {
	// Level is fastest (the default), default, better or best.
	Level string `yaml:"level"`
	// Window is the largest back-reference distance in bytes, a power of two between
	// 1 KiB and 8 MiB (the most RFC 9659 lets a client be asked to hold). The encoder
	// holds about 1.5 times the window, and so does every decoder of the output.
	Window int `yaml:"window"`
	// Concurrency is how many cores compress one body: above 1, sections of four
	// windows are compressed in parallel (each primed with the end of the one before)
	// into one zstd frame. Each core adds its encoder and sections to the body's
	// memory.
	Concurrency int `yaml:"concurrency"`
	SkipOptions `yaml:",inline"`
}

// newZstd returns the defaults, so that the configuration only overrides what it
// names.
func newZstd() Zstd {
	return Zstd{Level: zstd.SpeedFastest.String(), Window: defaultZstdWindow, Concurrency: 1, SkipOptions: defaultSkipOptions()}
}

// Build checks the options and returns the ready spec with its encoder pool.
func (z Zstd) Build() (stage.Spec, error) {
	ok, level := zstd.EncoderLevelFromString(strings.TrimSpace(z.Level))
	if !ok {
		return nil, fmt.Errorf("level: must be one of fastest, default, better, best, got %q", z.Level)
	}
	z.Level = level.String()
	if z.Window < zstd.MinWindowSize || z.Window > maxZstdWindow || z.Window&(z.Window-1) != 0 {
		return nil, fmt.Errorf("window: must be a power of two between %d and %d, got %d", zstd.MinWindowSize, maxZstdWindow, z.Window)
	}
	if z.Concurrency < 1 || z.Concurrency > maxConcurrency {
		return nil, fmt.Errorf("concurrency: must be between 1 and %d, got %d", maxConcurrency, z.Concurrency)
	}
	skip, err := z.SkipOptions.checked()
	if err != nil {
		return nil, err
	}
	z.SkipOptions = skip

	// Memory per stream, not speed, bounds how many bodies the server carries at
	// once. Measured at SpeedFastest and concurrency 1, 100 encoders each fed 1 MiB of
	// JSON: the default 8 MiB window holds about 8.7 MiB of heap per stream; a 1 MiB
	// window with lower-mem about 1.6 MiB, for the same ratio at about three quarters
	// of the speed (295 against 410 MB/s per core).
	p := &zstdPlanner{Zstd: z}
	p.options = []zstd.EOption{
		zstd.WithEncoderLevel(level),
		// At concurrency 1, one block at a time in the stage's goroutine: a body is one
		// stream, and the pipeline runs stages in parallel already.
		zstd.WithEncoderConcurrency(z.Concurrency),
		zstd.WithConcurrentBlocks(z.Concurrency > 1),
		zstd.WithWindowSize(z.Window),
		zstd.WithLowerEncoderMem(true),
		// Huffman-code the literals of a block without matches, as libzstd does, rather
		// than store it: base64 or hex text has no matches and codes in 6 or 4 bits a
		// byte. Stored, it would leave the fast levels 0.01% larger, not 25-50% smaller.
		zstd.WithAllLitEntropyCompression(true),
	}
	// One encoder now, so that options the library refuses fail the start-up.
	enc, err := zstd.NewWriter(nil, p.options...)
	if err != nil {
		return nil, fmt.Errorf("zstd: %w", err)
	}
	p.encoders = newEncoderPool(func(dst io.Writer) (*zstd.Encoder, error) {
		return zstd.NewWriter(dst, p.options...)
	})
	p.encoders.pool.Put(enc)
	return p, nil
}

// zstdPlanner is a built zstd step.
type zstdPlanner struct {
	Zstd
	options  []zstd.EOption
	encoders *encoderPool[*zstd.Encoder]
}

func (z *zstdPlanner) Name() string { return "zstd" }

func (z *zstdPlanner) PreviewSize(m *stage.Message) int { return z.previewSize(m) }

// Plan compresses the body unless it is one not to compress.
func (z *zstdPlanner) Plan(m *stage.Message, preview []byte) (stage.Step, error) {
	if z.skips(m, preview) {
		return stage.Step{}, nil
	}
	return compressStep("zstd", z.encoders.compress), nil
}
