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

// compressor compresses bodies.
type compressor interface {
	compress(dst io.Writer, src io.Reader) error
	// encodedSize is the size of b encoded whole, header and trailer included.
	encodedSize(b []byte) (int64, error)
}

// maxConcurrency bounds a compressor's concurrency option: more cores than this for
// one body is a configuration mistake.
const maxConcurrency = 64

// encoderPool lends one built compressor's encoders, whose state (hundreds of KiB
// to MiB of tables) is worth reusing from body to body.
type encoderPool[E encoder] struct {
	pool       sync.Pool
	newEncoder func(dst io.Writer) (E, error)
}

func newEncoderPool[E encoder](newEncoder func(dst io.Writer) (E, error)) *encoderPool[E] {
	return &encoderPool[E]{newEncoder: newEncoder}
}

// get returns a pooled encoder writing to dst, or a new one.
func (p *encoderPool[E]) get(dst io.Writer) (E, error) {
	enc, ok := p.pool.Get().(E)
	if ok {
		enc.Reset(dst)
		return enc, nil
	}
	return p.newEncoder(dst)
}

func (p *encoderPool[E]) put(enc E) {
	enc.Reset(io.Discard) // the pool must not keep dst alive
	p.pool.Put(enc)
}

// compress encodes src into dst with a pooled encoder, flushing when src pauses.
func (p *encoderPool[E]) compress(dst io.Writer, src io.Reader) error {
	enc, err := p.get(dst)
	if err != nil {
		return err
	}
	defer p.put(enc)
	if err := copyFlushing(enc, src); err != nil {
		return err
	}
	return enc.Close()
}

func (p *encoderPool[E]) encodedSize(b []byte) (int64, error) {
	var n countingWriter
	enc, err := p.get(&n)
	if err != nil {
		return 0, err
	}
	defer p.put(enc)
	if _, err := enc.Write(b); err != nil {
		return 0, err
	}
	err = enc.Close()
	return int64(n), err
}

// countingWriter counts what is written to it and keeps nothing.
type countingWriter int64

func (c *countingWriter) Write(p []byte) (int, error) {
	*c += countingWriter(len(p))
	return len(p), nil
}

// compressStep is the step of a compressor that compresses the body: it sets the
// content-encoding and drops the length, which changes.
func compressStep(encoding string, compress func(dst io.Writer, src io.Reader) error) stage.Step {
	return stage.Step{
		Transformer: stage.TransformFunc(compress),
		Edit:        stage.HeaderEdit{ContentEncoding: &encoding, ChangesLength: true},
	}
}
