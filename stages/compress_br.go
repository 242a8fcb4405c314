package stages

import (
	"io"
	"sync"

	"github.com/andybalholm/brotli"
)

// Brotli as a coding the compress stage can offer. Quality 0–11 (default 3, as
// Envoy's brotli compressor), window 2^18 bytes (Envoy's default window_bits).

const brotliWindowBits = 18

// Heap per writer, measured with 50 writers each fed 1 MiB of JSON at window 2^18:
// 2.1 MiB at qualities 1–3, 4.5–7.5 MiB at 4–11.
const (
	brotliFastState = 2560 << 10
	brotliState     = 8 << 20
)

func init() {
	registerEncoding("br", encoding{minLevel: 0, maxLevel: 11, defaultLevel: 3,
		newEncoder: func(level int) (encoder, error) {
			return &brotliEncoder{quality: level}, nil
		}})
}

// brotliEncoder compresses with andybalholm/brotli, reusing writers.
type brotliEncoder struct {
	quality int
	writers sync.Pool // of *brotli.Writer at quality
}

func (b *brotliEncoder) Transform(dst io.Writer, src io.Reader) error {
	bw, ok := b.writers.Get().(*brotli.Writer)
	if ok {
		bw.Reset(dst)
	} else {
		bw = brotli.NewWriterOptions(dst, brotli.WriterOptions{Quality: b.quality, LGWin: brotliWindowBits})
	}
	defer func() {
		bw.Reset(io.Discard) // the pool must not keep dst alive
		b.writers.Put(bw)
	}()
	if err := copyFlushing(bw, src); err != nil {
		return err
	}
	return bw.Close()
}

func (b *brotliEncoder) memoryEstimate() int64 {
	if b.quality <= 3 {
		return brotliFastState + stageCopyBuffer
	}
	return brotliState + stageCopyBuffer
}
