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
	// of tables (1 MiB window: 1.6 MiB measured; 8 MiB: 8.8 MiB).
	zstdEncoderTables = 640 << 10
	// A zstd decoder holds the frame's window plus ~500 KiB (1 MiB window: 1.5 MiB;
	// 8 MiB: 8.6 MiB measured). gunzip and inflate hold their 32 KiB window and tables.
	zstdDecoderTables = 512 << 10
	inflateState      = 64 << 10
)

func (g *gzipPlanner) MemoryEstimate(*stage.Message) int64 {
	if g.Level <= 1 {
		return gzipFastState + stageCopyBuffer
	}
	return gzipState + stageCopyBuffer
}

func (z *zstdPlanner) MemoryEstimate(*stage.Message) int64 {
	return int64(z.Window) + zstdEncoderTables + stageCopyBuffer
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
		default:
			return 0
		}
	}
	if encoding == encodingZstd || encoding == encodingAuto {
		return d.MaxWindowBytes + zstdDecoderTables + stageCopyBuffer
	}
	return inflateState + stageCopyBuffer
}
