package pipeline

import (
	"io"
	"sync"
	"time"

	"github.com/bodystream/bodystream/stage"
)

// newPipe is io.Pipe with one addition: its reader is a stage.IdleNotifier. When
// idle > 0 and the stage registered a flush, a Read that has waited idle for data
// since bytes last came calls that flush, once per pause, so that a stage holding
// output in a buffer (a compressor) lets a trickling body stream. Like io.Pipe it has
// no buffer: Write returns when the reader has taken every byte. The reader counts
// the bytes it hands out, for the run's accounting.
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
	idle      time.Duration
	flush     func() error // the stage's, from NotifyIdle; nil: never told
	timer     *time.Timer
	unflushed bool  // bytes came since the last flush
	handed    int64 // bytes handed to the reader
}

func (p *bodyPipe) read(b []byte) (int, error) {
	for {
		select {
		case <-p.done:
			return 0, p.readCloseError()
		default:
		}
		var idle <-chan time.Time
		if p.flush != nil && p.idle > 0 && p.unflushed {
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
			p.handed += int64(n)
			p.unflushed = p.unflushed || n > 0
			if p.timer != nil {
				p.timer.Stop()
			}
			return n, nil
		case <-p.done:
			return 0, p.readCloseError()
		case <-idle:
			// Nothing more until bytes come again: a flush with nothing new would
			// add bytes and send none.
			p.unflushed = false
			if err := p.flush(); err != nil {
				return 0, err
			}
		}
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

var _ stage.IdleNotifier = (*pipeReader)(nil)

func (r *pipeReader) Read(b []byte) (int, error) { return r.p.read(b) }

// NotifyIdle registers the stage's flush (stage.IdleNotifier). Call it before the
// first Read, from the reading goroutine.
func (r *pipeReader) NotifyIdle(flush func() error) { r.p.flush = flush }

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
