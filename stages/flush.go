package stages

import (
	"io"
	"sync"

	"github.com/bodystream/bodystream/stage"
)

// flusher is a compressor that can push out what it holds without ending its stream.
type flusher interface {
	io.Writer
	Flush() error
}

// copyBuffers hold the chunks a compressor's input passes through.
var copyBuffers = sync.Pool{New: func() any {
	b := make([]byte, stageCopyBuffer)
	return &b
}}

// copyFlushing copies src into w and, when src can say that its input paused
// (stage.IdleNotifier), flushes w then, so that a trickling body leaves the
// compressor as it comes at the cost of a few bytes per pause. It always goes through
// Write: the flush runs inside src's Read, between two Writes, which a ReadFrom (zstd
// has one) would not leave.
func copyFlushing(w flusher, src io.Reader) error {
	if n, ok := src.(stage.IdleNotifier); ok {
		n.NotifyIdle(w.Flush)
	}
	buf := copyBuffers.Get().(*[]byte)
	defer copyBuffers.Put(buf)
	_, err := io.CopyBuffer(writerOnly{w}, src, *buf)
	return err
}

// writerOnly hides every method but Write.
type writerOnly struct{ io.Writer }
