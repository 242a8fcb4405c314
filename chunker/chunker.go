// Package chunker cuts a byte stream into bounded messages. It knows only sizes and time.
package chunker

import (
	"errors"
	"sync"
	"time"
)

// ErrClosed is returned by Write after Close.
var ErrClosed = errors.New("chunker: write after close")

// Chunker is an io.Writer that cuts what it is given into messages of at most Size
// bytes and hands each to emit: when a message is full, when delay has passed since
// its first byte was written, and on Close. It is a bufio.Writer with a clock.
//
// emit may block (a slow receiver): writers then block behind it and no queue grows.
// emit owns msg until it returns it to the Pool with Put.
//
// Write and Close are meant for one goroutine; the clock runs beside it. emit is
// never called concurrently with itself, messages go out in the order of their bytes,
// and no message is empty. The first error emit returns is kept and returned by every
// later Write and Close.
type Chunker struct {
	pool  *Pool
	delay time.Duration
	emit  func(msg []byte) error

	// mu is held while emit runs, so that a slow emit holds back both the writer and
	// the clock instead of letting either queue up messages.
	mu      sync.Mutex
	pending []byte // bytes not yet emitted; nil when none, and always after Close or an error
	err     error  // the first error from emit
	closed  bool
	// written counts the bytes Write took, emitted those handed to emit; once Close
	// returned nil the two are equal.
	written, emitted int64

	// The clock: one AfterFunc timer, armed when a message begins and stopped when
	// it is emitted. armed says a callback is scheduled or running and has not yet
	// taken mu; ticks counts such callbacks so that Close can wait until none runs.
	timer *time.Timer
	armed bool
	ticks sync.WaitGroup
}

// New returns a Chunker whose buffers come from pool (whose size is the message size).
// A delay <= 0 turns the clock off: every Write then emits what it leaves pending
// before it returns.
func New(pool *Pool, delay time.Duration, emit func(msg []byte) error) *Chunker {
	return &Chunker{pool: pool, delay: delay, emit: emit}
}

// Write copies p into the pending message, emitting each message as it fills. It
// returns once every byte is either emitted or pending; a blocking emit blocks it.
func (c *Chunker) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return 0, c.err
	}
	if c.closed {
		return 0, ErrClosed
	}
	written := 0
	for len(p) > 0 {
		if c.pending == nil {
			c.pending = c.pool.Get()
			c.startClock()
		}
		n := copy(c.pending[len(c.pending):cap(c.pending)], p)
		c.pending = c.pending[:len(c.pending)+n]
		written += n
		c.written += int64(n)
		p = p[n:]
		if len(c.pending) == cap(c.pending) {
			if err := c.emitPending(); err != nil {
				return written, err
			}
		}
	}
	if c.delay <= 0 {
		if err := c.emitPending(); err != nil {
			return written, err
		}
	}
	return written, nil
}

// Close flushes and stops the clock. Writes after Close fail. Close returns once no
// clock callback runs any more; calling it again returns the error of the first call.
func (c *Chunker) Close() error {
	c.mu.Lock()
	if c.closed {
		defer c.mu.Unlock()
		return c.err
	}
	c.closed = true
	if c.err == nil {
		c.emitPending() // records its error in c.err
	}
	c.stopClock()
	err := c.err
	c.mu.Unlock()
	// A callback that fired too late for stopClock to stop it finds nothing pending
	// and returns at once.
	c.ticks.Wait()
	return err
}

// emitPending hands the pending bytes to emit. It is called with mu held.
func (c *Chunker) emitPending() error {
	if len(c.pending) == 0 {
		return nil
	}
	msg := c.pending
	c.pending = nil
	c.stopClock()
	if err := c.emit(msg); err != nil {
		c.err = err
		return err
	}
	c.emitted += int64(len(msg))
	return nil
}

// Counts returns how many bytes Write took and how many went to emit.
func (c *Chunker) Counts() (written, emitted int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.written, c.emitted
}

// startClock makes sure a callback emits the message that begins now within delay.
// It is called with mu held.
func (c *Chunker) startClock() {
	if c.delay <= 0 || c.armed {
		// When armed, a callback that fired just before stopClock could stop it is
		// waiting for mu. It will emit this message early, which the delay, an upper
		// bound, allows.
		return
	}
	c.armed = true
	c.ticks.Add(1)
	if c.timer == nil {
		c.timer = time.AfterFunc(c.delay, c.tick)
		return
	}
	c.timer.Reset(c.delay)
}

// stopClock cancels the scheduled callback if it has not started yet. It is called
// with mu held.
func (c *Chunker) stopClock() {
	if c.armed && c.timer.Stop() {
		c.armed = false
		c.ticks.Done()
	}
}

// tick runs on the clock's goroutine: the pending message is due.
func (c *Chunker) tick() {
	defer c.ticks.Done()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.armed = false
	// After Close or an error nothing is pending, so a late tick emits nothing.
	c.emitPending() // records its error in c.err for the next Write
}

// Pool hands out byte slices of one fixed capacity.
type Pool struct {
	size    int
	buffers sync.Pool // *[]byte of capacity size
	// boxes holds the empty *[]byte that Get leaves behind, for Put to fill again:
	// putting a bare []byte into a sync.Pool would allocate its interface value.
	boxes sync.Pool
}

// NewPool returns a pool of buffers of capacity size. It panics if size < 1.
func NewPool(size int) *Pool {
	if size < 1 {
		panic("chunker: NewPool with size < 1")
	}
	return &Pool{size: size}
}

// Get returns an empty slice of the pool's capacity.
func (p *Pool) Get() []byte {
	box, ok := p.buffers.Get().(*[]byte)
	if !ok {
		return make([]byte, 0, p.size)
	}
	b := (*box)[:0]
	*box = nil
	p.boxes.Put(box)
	return b
}

// Put returns a buffer obtained from Get. A slice of another capacity is ignored, so
// that no Get ever returns one.
func (p *Pool) Put(b []byte) {
	if cap(b) != p.size {
		return
	}
	box, ok := p.boxes.Get().(*[]byte)
	if !ok {
		box = new([]byte)
	}
	*box = b[:0]
	p.buffers.Put(box)
}
