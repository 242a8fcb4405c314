package pipeline

import (
	"io"
	"sync"
	"time"

	"github.com/bodystream/bodystream/stage"
)

// newPipe is io.Pipe with one addition: when idle > 0, a Read that has waited idle
// for data returns stage.ErrInputIdle, once per pause, so that a stage holding output
// in a buffer (a compressor) can flush it and a trickling body still streams. Like
// io.Pipe it has no buffer: Write returns when the reader has taken every byte.
func newPipe(idle time.Duration) (*pipeReader, *pipeWriter) {
	p := &bodyPipe{
		wrCh: make(chan []byte),
		rdCh: make(chan int),
		done: make(chan struct{}),
		idle: idle,
	}
	return &pipeReader{p}, &pipeWriter{p}
}

type bodyPipe struct {
	wrMu sync.Mutex // serialises Writes
	wrCh chan []byte
	rdCh chan int

	once       sync.Once
	done       chan struct{}
	rerr, werr onceError

	// Owned by the reader.
	idle     time.Duration
	timer    *time.Timer
	idleSeen bool // ErrInputIdle was returned and no byte has come since
}

func (p *bodyPipe) read(b []byte) (int, error) {
	select {
	case <-p.done:
		return 0, p.readCloseError()
	default:
	}
	var idle <-chan time.Time
	if p.idle > 0 && !p.idleSeen {
		if p.timer == nil {
			p.timer = time.NewTimer(p.idle)
		} else {
			p.timer.Reset(p.idle)
		}
		idle = p.timer.C
	}
	select {
	case bw := <-p.wrCh:
		n := copy(b, bw)
		p.rdCh <- n
		p.idleSeen = false
		if p.timer != nil {
			p.timer.Stop()
		}
		return n, nil
	case <-p.done:
		return 0, p.readCloseError()
	case <-idle:
		p.idleSeen = true
		return 0, stage.ErrInputIdle
	}
}

func (p *bodyPipe) write(b []byte) (n int, err error) {
	select {
	case <-p.done:
		return 0, p.writeCloseError()
	default:
		p.wrMu.Lock()
		defer p.wrMu.Unlock()
	}
	for once := true; once || len(b) > 0; once = false {
		select {
		case p.wrCh <- b:
			nw := <-p.rdCh
			b = b[nw:]
			n += nw
		case <-p.done:
			return n, p.writeCloseError()
		}
	}
	return n, nil
}

func (p *bodyPipe) closeRead(err error) {
	if err == nil {
		err = io.ErrClosedPipe
	}
	p.rerr.store(err)
	p.once.Do(func() { close(p.done) })
}

func (p *bodyPipe) closeWrite(err error) {
	if err == nil {
		err = io.EOF
	}
	p.werr.store(err)
	p.once.Do(func() { close(p.done) })
}

// readCloseError is what the reader sees once the pipe is closed: the writer's
// error (io.EOF for a plain Close) unless the reader closed it first.
func (p *bodyPipe) readCloseError() error {
	if werr := p.werr.load(); p.rerr.load() == nil && werr != nil {
		return werr
	}
	return io.ErrClosedPipe
}

func (p *bodyPipe) writeCloseError() error {
	if rerr := p.rerr.load(); p.werr.load() == nil && rerr != nil {
		return rerr
	}
	return io.ErrClosedPipe
}

type pipeReader struct{ p *bodyPipe }

func (r *pipeReader) Read(b []byte) (int, error) { return r.p.read(b) }

// CloseWithError closes the reader; the writer's next Write returns err.
func (r *pipeReader) CloseWithError(err error) error {
	r.p.closeRead(err)
	return nil
}

type pipeWriter struct{ p *bodyPipe }

func (w *pipeWriter) Write(b []byte) (int, error) { return w.p.write(b) }

// Close ends the input: the reader's next Read returns io.EOF.
func (w *pipeWriter) Close() error { return w.CloseWithError(nil) }

// CloseWithError closes the writer; the reader's next Read returns err.
func (w *pipeWriter) CloseWithError(err error) error {
	w.p.closeWrite(err)
	return nil
}

// onceError keeps the first error stored in it.
type onceError struct {
	mu  sync.Mutex
	err error
}

func (e *onceError) store(err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.err == nil {
		e.err = err
	}
}

func (e *onceError) load() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.err
}
