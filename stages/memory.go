package stages

import (
	"strings"

	"github.com/bodystream/bodystream/stage"
)

// Per-body memory, stage by stage. The server reserves a pipeline's estimate from the
// global memory budget before the body starts, so the figures must not be low: they
// are the codecs' state measured with 100 concurrent streams on this project's
// reference machine (see shared notes in README "Memory"), rounded up, plus the
// stage's own fixed copy buffer. Observers (hash, scan, limit, file) keep a few
// hundred bytes per body and are not counted.

const (
	stageCopyBuffer = 32 << 10
	// gzip level 1 holds ~790 KiB of match state; higher levels use larger tables.
	gzipFastState = 800 << 10
	gzipState     = 1280 << 10
	// A zstd encoder at concurrency 1 with lower-mem holds its window plus ~600 KiB
	// of tables (1 MiB window: 1.6 MiB measured with 100 streams; 8 MiB: 8.8 MiB).
	// One 1 GiB body peaks at 1.98 MiB of heap in use, garbage included
	// (BenchmarkParallelCompression), hence the round 1 MiB.
	zstdEncoderTables = 1 << 20
	// A zstd decoder holds the frame's window plus ~500 KiB (1 MiB window: 1.5 MiB;
	// 8 MiB: 8.6 MiB measured). gunzip and inflate hold their 32 KiB window and tables.
	zstdDecoderTables = 512 << 10
	inflateState      = 64 << 10
	// A brotli decoder holds the stream's window plus ~70 KiB of Huffman tables and
	// its own 32 KiB read buffer (window bits 20: 1092 KiB measured; 24: 16451 KiB).
	brotliDecoderTables = 256 << 10
)

// brotliEncoderState is a brotli writer's heap with a window of w bytes at quality q,
// measured feeding 8 MiB of half JSON, half random bytes (window bits 16 to 24):
// qualities 0 and 1 keep a fixed ~1 MiB whatever the window; 2 and 3 about twice
// the window (bits 22: 8.8 MiB, 24: 32.8 MiB); 4 to 6 three to four times
// (bits 22: 16.2 MiB, 24: 46.5 MiB); 7 to 9 add ~37 MiB of hash chains (quality 9,
// bits 18: 37 MiB, 24: 77 MiB); 10 and 11 (Zopfli) about 14 times the window
// (bits 20: 15 MiB). The formulas round those up.
func brotliEncoderState(quality, windowBits int) int64 {
	w := int64(1) << windowBits
	switch {
	case quality <= 1:
		return 1 << 20
	case quality <= 3:
		return w*9/4 + 1<<20
	case quality <= 6:
		return 4*w + 4<<20
	case quality <= 9:
		return 4*w + 40<<20
	default:
		return 16*w + 4<<20
	}
}

func (b *brotliPlanner) MemoryEstimate(*stage.Message) int64 {
	return brotliEncoderState(b.Quality, b.WindowBits) + stageCopyBuffer
}

func (g *gzipPlanner) MemoryEstimate(*stage.Message) int64 {
	state := int64(gzipState)
	if g.Level <= 1 {
		state = gzipFastState
	}
	if g.Concurrency > 1 {
		return parallelGzipState(g.Concurrency, state) + stageCopyBuffer
	}
	return state + stageCopyBuffer
}

func (z *zstdPlanner) MemoryEstimate(*stage.Message) int64 {
	encoder := int64(z.Window) + zstdEncoderTables
	if z.Concurrency == 1 {
		return encoder + stageCopyBuffer
	}
	// In parallel the body is cut into sections (jobs) of four windows, at least 512
	// KiB. Up to 3n + 2 are held at once (n queued, n compressing, n compressed and
	// waiting their turn, one being written, one filling), each with an output buffer
	// as large as its input when the data does not compress. Measured on a 1 GiB JSON
	// body with a 1 MiB window: 38.7 MiB peak heap at concurrency 2 (the formula: 68).
	n := int64(z.Concurrency)
	section := max(4*int64(z.Window), 512<<10)
	return n*encoder + (3*n+2)*2*section + stageCopyBuffer
}

// MemoryEstimate counts the decoder the message's content-encoding will pick; auto
// with no or an unknown encoding decodes nothing.
func (d *decompressPlanner) MemoryEstimate(m *stage.Message) int64 {
	encoding := d.Encoding
	if encoding == encodingAuto && m != nil {
		switch strings.ToLower(strings.TrimSpace(m.Header.Get("Content-Encoding"))) {
		case "gzip", "x-gzip":
			encoding = encodingGzip
		case "deflate":
			encoding = encodingDeflate
		case "zstd":
			encoding = encodingZstd
		case "br":
			encoding = encodingBrotli
		default:
			return 0
		}
	}
	if encoding == encodingBrotli {
		return d.MaxBrotliWindowBytes + brotliDecoderTables + stageCopyBuffer
	}
	if encoding == encodingAuto {
		// Unknown until the headers come: the largest of the decoders.
		return max(d.MaxWindowBytes+zstdDecoderTables, d.MaxBrotliWindowBytes+brotliDecoderTables) + stageCopyBuffer
	}
	if encoding == encodingZstd {
		return d.MaxWindowBytes + zstdDecoderTables + stageCopyBuffer
	}
	return inflateState + stageCopyBuffer
}
