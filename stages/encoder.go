package stages

import (
	"io"
	"sync"

	"github.com/bodystream/bodystream/stage"
)

// encoder is a streaming compressor that can be reused for another body: gzip, zstd
// and brotli writers all are.
type encoder interface {
	flusher
	io.Closer
	Reset(dst io.Writer)
}

// encoderPool lends one built compressor's encoders, whose state (hundreds of KiB
// to MiB of tables) is worth reusing from body to body.
type encoderPool[E encoder] struct {
	pool       sync.Pool
	newEncoder func(dst io.Writer) (E, error)
}

func newEncoderPool[E encoder](newEncoder func(dst io.Writer) (E, error)) *encoderPool[E] {
	return &encoderPool[E]{newEncoder: newEncoder}
}

// compress encodes src into dst with a pooled encoder, flushing when src pauses.
func (p *encoderPool[E]) compress(dst io.Writer, src io.Reader) error {
	enc, ok := p.pool.Get().(E)
	if ok {
		enc.Reset(dst)
	} else {
		var err error
		if enc, err = p.newEncoder(dst); err != nil {
			return err
		}
	}
	defer func() {
		enc.Reset(io.Discard) // the pool must not keep dst alive
		p.pool.Put(enc)
	}()

	if err := copyFlushing(enc, src); err != nil {
		return err
	}
	return enc.Close()
}

// compressStep is the step of a compressor that compresses the body: it sets the
// content-encoding and drops the length, which changes.
func compressStep(encoding string, compress func(dst io.Writer, src io.Reader) error) stage.Step {
	return stage.Step{
		Transformer: stage.TransformFunc(compress),
		Edit:        stage.HeaderEdit{ContentEncoding: &encoding, ChangesLength: true},
	}
}
