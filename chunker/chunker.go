// Package chunker cuts a byte stream into bounded messages. It knows only sizes and time.
package chunker

import (
	"time"
)

// Chunker is an io.Writer that cuts what it is given into messages of at most Size
// bytes and hands each to emit: when a message is full, when Delay has passed since
// its first byte was written, and on Flush or Close. It is a bufio.Writer with a clock.
//
// emit may block (a slow receiver): writers then block behind it and no queue grows.
// emit owns msg until it returns it to the Pool with Put.
type Chunker struct{}

// New returns a Chunker whose buffers come from pool (whose size is the message size).
func New(pool *Pool, delay time.Duration, emit func(msg []byte) error) *Chunker { panic("TODO") }

func (c *Chunker) Write(p []byte) (int, error) { panic("TODO") }

// Flush emits the pending bytes, if any.
func (c *Chunker) Flush() error { panic("TODO") }

// Close flushes and stops the clock. Writes after Close fail.
func (c *Chunker) Close() error { panic("TODO") }

// Pool hands out byte slices of one fixed capacity.
type Pool struct{}

func NewPool(size int) *Pool { panic("TODO") }

// Size is the capacity of every buffer of the pool.
func (p *Pool) Size() int { panic("TODO") }

// Get returns an empty slice of capacity Size.
func (p *Pool) Get() []byte { panic("TODO") }

// Put returns a buffer obtained from Get.
func (p *Pool) Put(b []byte) { panic("TODO") }

// Collector gathers output for protocols that answer each input chunk with exactly one
// reply (Envoy's STREAMED mode) or one reply in all (BUFFERED): Take returns all the
// output gathered since the last Take. Writes never block, so the pipeline cannot
// deadlock against the reply that would drain it; what it holds is bounded by what one
// input chunk can expand to, which the stages' limits cap.
type Collector struct{}

func (c *Collector) Write(p []byte) (int, error) { panic("TODO") }

// Take returns the gathered bytes (nil when none) and starts a new gathering.
func (c *Collector) Take() []byte { panic("TODO") }
