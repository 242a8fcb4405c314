package stages

import (
	"errors"
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

// copyFlushing copies src into w, flushing w whenever src reports that its input
// paused (ErrInputIdle), so that a trickling body leaves the compressor as it comes
// at the cost of a few bytes per pause. It always goes through Write: a ReadFrom
// (zstd's) would keep the idle report as the encoder's sticky error.
func copyFlushing(w flusher, src io.Reader) error {
	buf := copyBuffers.Get().(*[]byte)
	defer copyBuffers.Put(buf)
	for {
		n, err := io.CopyBuffer(writerOnly{w}, src, *buf)
		if !errors.Is(err, stage.ErrInputIdle) {
			return err
		}
		if n == 0 {
			continue // nothing came since the last flush: a flush would add bytes, not send any
		}
		if err := w.Flush(); err != nil {
			return err
		}
	}
}

// writerOnly hides every method but Write.
type writerOnly struct{ io.Writer }
