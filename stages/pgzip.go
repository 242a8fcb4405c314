package stages

import (
	"io"

	"github.com/klauspost/pgzip"
)

// parallelBlockSize is the piece of a body that one core compresses when a gzip
// stage's concurrency is above 1. Each block is deflated with the 32 KiB before it as
// its dictionary, so the ratio barely moves (a block boundary costs a few hundred
// bytes); a smaller block spreads a body over the cores sooner but costs more
// boundaries. pgzip's default is 1 MiB; 256 KiB keeps four blocks in flight under
// 6 MiB.
const parallelBlockSize = 256 << 10

// parallelGzip compresses blocks of one body on several cores into one gzip member:
// the output is a single gzip stream that any decoder reads.
type parallelGzip struct {
	*pgzip.Writer
	blocks int
}

func newParallelGzip(dst io.Writer, level, blocks int) (*parallelGzip, error) {
	zw, err := pgzip.NewWriterLevel(dst, level)
	if err != nil {
		return nil, err
	}
	p := &parallelGzip{Writer: zw, blocks: blocks}
	return p, zw.SetConcurrency(parallelBlockSize, blocks)
}

// Reset waits for the blocks of the previous body, whose goroutines end with it, and
// makes the writer ready for dst. pgzip's own Reset forgets the concurrency.
func (p *parallelGzip) Reset(dst io.Writer) {
	p.Writer.Reset(dst)
	_ = p.SetConcurrency(parallelBlockSize, p.blocks) // valid: newParallelGzip set it
}

// parallelGzipState is what a parallel gzip body holds: each block in flight (one
// per core, the one filling and the one being written out) has three buffers of a
// block from pgzip's pool (input, output, and the 32 KiB dictionary tail, which takes
// a whole pooled buffer) and a deflate compressor of its own; and blocks done with
// wait for the collector. Measured in BenchmarkParallelCompression (peak heap in use,
// garbage included, over a 1 GiB body at level 1): 8.2 MiB at concurrency 2, 10.2 MiB
// at 4; the formula gives 8.8 and 12.
func parallelGzipState(blocks int, deflateState int64) int64 {
	const pooledBuffer = parallelBlockSize + parallelBlockSize/16
	const freedBlocks = 4 << 20
	return int64(blocks+2)*3*pooledBuffer + int64(blocks)*deflateState + freedBlocks
}
