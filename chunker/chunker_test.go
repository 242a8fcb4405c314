package chunker

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// patience bounds every wait for something the code under test must do by itself; it
// only ever runs out when the test fails.
const patience = 5 * time.Second

// quiet is how long a test watches for something that must not happen (a blocked
// Write returning). A correct Chunker never does it, so this wait cannot fail a test
// spuriously; it gives a broken Chunker the time to show itself.
const quiet = 20 * time.Millisecond

// blockingEmit returns an emit that announces each message on entered and returns only
// when released, and that reports any message emitted while another one still is.
func blockingEmit(t *testing.T, pool *Pool) (emit func([]byte) error, entered <-chan []byte, release chan<- struct{}) {
	var inFlight atomic.Int32
	enteredCh := make(chan []byte)
	releaseCh := make(chan struct{})
	emit = func(msg []byte) error {
		if inFlight.Add(1) != 1 {
			t.Error("emit called while another emit runs")
		}
		defer inFlight.Add(-1)
		enteredCh <- bytes.Clone(msg)
		<-releaseCh
		pool.Put(msg)
		return nil
	}
	return emit, enteredCh, releaseCh
}

// expectBlocked fails the test if, within quiet, a message enters emit or Write returns.
func expectBlocked(t *testing.T, entered <-chan []byte, writeDone <-chan error, why string) {
	t.Helper()
	select {
	case msg := <-entered:
		t.Fatalf("emit of %x started while %s", msg, why)
	case err := <-writeDone:
		t.Fatalf("Write returned (%v) while %s", err, why)
	case <-time.After(quiet):
	}
}

// recorder is an emit that keeps a copy of every message, returns the buffer to the
// pool as a real consumer does, and reports any message emitted while another one
// still is.
type recorder struct {
	t        *testing.T
	pool     *Pool
	inFlight atomic.Int32

	mu       sync.Mutex
	messages [][]byte
}

func (r *recorder) emit(msg []byte) error {
	if r.inFlight.Add(1) != 1 {
		r.t.Error("emit called while another emit runs")
	}
	defer r.inFlight.Add(-1)
	r.mu.Lock()
	r.messages = append(r.messages, bytes.Clone(msg))
	r.mu.Unlock()
	r.pool.Put(msg)
	return nil
}

// emitted returns the messages so far and their total length.
func (r *recorder) emitted() ([][]byte, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	total := 0
	for _, m := range r.messages {
		total += len(m)
	}
	return r.messages, total
}

// receive waits for one value from ch.
func receive[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(patience):
		t.Fatalf("no %s within %v", what, patience)
		panic("unreachable")
	}
}

// randomBytes returns n bytes from a fixed seed, so that a misplaced byte shows.
func randomBytes(n int) []byte {
	rng := rand.New(rand.NewPCG(1, uint64(n)))
	p := make([]byte, n)
	for i := range p {
		p[i] = byte(rng.Uint32())
	}
	return p
}

func TestChunkerReassemblesInput(t *testing.T) {
	// Each pattern returns the sizes of the writes that make up total bytes.
	repeat := func(each int) func(size, total int) []int {
		return func(size, total int) []int {
			var writes []int
			for total > 0 {
				n := min(each, total)
				writes = append(writes, n)
				total -= n
			}
			return writes
		}
	}
	multiple := func(factor int) func(size, total int) []int {
		return func(size, total int) []int { return repeat(factor*size)(size, total) }
	}
	patterns := []struct {
		name   string
		writes func(size, total int) []int
	}{
		{"one big write", func(_, total int) []int { return []int{total} }},
		{"1-byte writes", repeat(1)},
		{"random sizes", func(size, total int) []int {
			rng := rand.New(rand.NewPCG(7, uint64(size)))
			var writes []int
			for total > 0 {
				n := min(rng.IntN(3*size+1), total) // includes empty writes
				writes = append(writes, n)
				total -= n
			}
			return writes
		}},
		{"writes of Size", multiple(1)},
		{"writes of 3*Size", multiple(3)},
		{"writes of Size-1", func(size, total int) []int { return repeat(max(size-1, 1))(size, total) }},
		{"writes of Size+1", func(size, total int) []int { return repeat(size+1)(size, total) }},
	}
	for _, size := range []int{1, 7, 64} {
		// A multiple of every size, and one that is not a multiple of 7 or 64.
		for _, total := range []int{0, 10 * size, 1000 + 3} {
			input := randomBytes(total)
			for _, pattern := range patterns {
				for _, delay := range []time.Duration{-1, 0, time.Hour} {
					name := fmt.Sprintf("size=%d/total=%d/%s/delay=%v", size, total, pattern.name, delay)
					t.Run(name, func(t *testing.T) {
						pool := NewPool(size)
						rec := &recorder{t: t, pool: pool}
						c := New(pool, delay, rec.emit)
						rest := input
						written := 0
						for _, n := range pattern.writes(size, total) {
							got, err := c.Write(rest[:n])
							if got != n || err != nil {
								t.Fatalf("Write(%d bytes) = %d, %v", n, got, err)
							}
							rest = rest[n:]
							written += n
							_, emitted := rec.emitted()
							if delay <= 0 && emitted != written {
								t.Fatalf("without a clock, %d of %d written bytes were emitted when Write returned", emitted, written)
							}
							if delay > 0 && emitted != written/size*size {
								t.Fatalf("%d of %d written bytes were emitted; want every full message (%d bytes) and nothing more", emitted, written, written/size*size)
							}
						}
						if err := c.Close(); err != nil {
							t.Fatalf("Close: %v", err)
						}
						messages, _ := rec.emitted()
						for i, m := range messages {
							if len(m) == 0 || len(m) > size {
								t.Errorf("message %d has %d bytes, want 1 to %d", i, len(m), size)
							}
							if delay > 0 && i < len(messages)-1 && len(m) != size {
								t.Errorf("message %d has %d bytes; only the last one may be partial when the clock never fires", i, len(m))
							}
						}
						if got := bytes.Join(messages, nil); !bytes.Equal(got, input) {
							t.Errorf("messages join to %d bytes that differ from the %d input bytes", len(got), len(input))
						}
					})
				}
			}
		}
	}
}

func TestChunkerWithoutClockEmitsEachWrite(t *testing.T) {
	const size = 16
	writes := []struct {
		n    int
		want []int // lengths of the messages this write emits
	}{
		{3, []int{3}},
		{40, []int{16, 16, 8}},
		{16, []int{16}},
		{0, nil},
		{5, []int{5}},
	}
	for _, delay := range []time.Duration{0, -time.Second} {
		t.Run(fmt.Sprintf("delay=%v", delay), func(t *testing.T) {
			pool := NewPool(size)
			rec := &recorder{t: t, pool: pool}
			c := New(pool, delay, rec.emit)
			input := randomBytes(64)
			before := 0
			for _, w := range writes {
				if _, err := c.Write(input[:w.n]); err != nil {
					t.Fatal(err)
				}
				messages, _ := rec.emitted()
				var got []int
				for _, m := range messages[before:] {
					got = append(got, len(m))
				}
				if fmt.Sprint(got) != fmt.Sprint(w.want) {
					t.Errorf("Write(%d bytes) emitted messages of %v bytes, want %v", w.n, got, w.want)
				}
				if joined := bytes.Join(messages[before:], nil); !bytes.Equal(joined, input[:w.n]) {
					t.Errorf("Write(%d bytes) emitted other bytes than it was given", w.n)
				}
				before = len(messages)
			}
			if err := c.Close(); err != nil {
				t.Fatal(err)
			}
			if messages, _ := rec.emitted(); len(messages) != before {
				t.Errorf("Close emitted %d messages with nothing pending", len(messages)-before)
			}
		})
	}
}

func TestChunkerClockEmitsPartialMessage(t *testing.T) {
	const size = 16
	pool := NewPool(size)
	// Buffered, so that a full message emitted inside Write does not wait for the test.
	got := make(chan []byte, 8)
	c := New(pool, time.Millisecond, func(msg []byte) error {
		got <- bytes.Clone(msg)
		pool.Put(msg)
		return nil
	})
	input := randomBytes(100)
	steps := []struct {
		name  string
		write []byte
		want  [][]byte // in order: full messages from Write, then the clock's partial one
	}{
		{"partial", input[:3], [][]byte{input[:3]}},
		{"another partial", input[3:8], [][]byte{input[3:8]}},
		{"full then partial", input[8 : 8+size+3], [][]byte{input[8 : 8+size], input[8+size : 8+size+3]}},
		{"partial made of two writes", input[40:42], [][]byte{input[40:42]}},
	}
	for _, step := range steps {
		if _, err := c.Write(step.write); err != nil {
			t.Fatalf("%s: Write: %v", step.name, err)
		}
		for i, want := range step.want {
			if msg := receive(t, got, step.name+" message"); !bytes.Equal(msg, want) {
				t.Errorf("%s: message %d = %x, want %x", step.name, i, msg, want)
			}
		}
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if len(got) != 0 {
		t.Errorf("Close emitted %d messages after the clock had emitted everything", len(got))
	}
}

// TestChunkerClockTiming runs on synctest's fake clock, so that it can say to the
// nanosecond when the clock emits without depending on the machine's speed.
func TestChunkerClockTiming(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const size, delay = 8, 10 * time.Millisecond
		pool := NewPool(size)
		rec := &recorder{t: t, pool: pool}
		c := New(pool, delay, rec.emit)
		input := randomBytes(100)
		written := 0
		write := func(n int) {
			t.Helper()
			if _, err := c.Write(input[written : written+n]); err != nil {
				t.Fatal(err)
			}
			written += n
		}
		expect := func(when string, want ...int) {
			t.Helper()
			synctest.Wait() // until the clock, if it fired, has emitted
			messages, _ := rec.emitted()
			var got []int
			for _, m := range messages {
				got = append(got, len(m))
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("%s: messages of %v bytes, want %v", when, got, want)
			}
		}

		write(3)
		time.Sleep(delay / 2)
		write(2) // joins the message begun delay/2 ago
		time.Sleep(delay/2 - time.Nanosecond)
		expect("1ns before the delay since the first pending byte")
		time.Sleep(time.Nanosecond)
		expect("at the delay", 5)

		write(size + 2)
		expect("after a write of a full message and more", 5, size)
		time.Sleep(delay - time.Nanosecond)
		expect("1ns before the delay since the rest was written", 5, size)
		time.Sleep(time.Nanosecond)
		expect("at the delay since the rest was written", 5, size, 2)

		// A message that fills later than it began: the clock of the rest starts when
		// the rest is written, not when the full message began.
		write(3)
		time.Sleep(delay / 2)
		write(size - 3 + 1)
		expect("after filling a message begun delay/2 ago", 5, size, 2, size)
		time.Sleep(delay - time.Nanosecond)
		expect("1ns before the delay since the rest was written", 5, size, 2, size)
		time.Sleep(time.Nanosecond)
		expect("at the delay since the rest was written", 5, size, 2, size, 1)

		time.Sleep(time.Hour)
		expect("an hour later, with nothing pending", 5, size, 2, size, 1)

		write(1)
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
		expect("after Close", 5, size, 2, size, 1, 1)
		time.Sleep(time.Hour)
		expect("an hour after Close", 5, size, 2, size, 1, 1)

		if messages, _ := rec.emitted(); !bytes.Equal(bytes.Join(messages, nil), input[:written]) {
			t.Error("messages do not join to the input")
		}
	})
}

// TestChunkerBlockingEmitBlocksWrite runs in a synctest bubble, whose Wait makes
// "Write has not returned" a fact rather than a guess: once every goroutine is blocked,
// a Write that could return would have.
func TestChunkerBlockingEmitBlocksWrite(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const size = 4
		pool := NewPool(size)
		emit, entered, release := blockingEmit(t, pool)
		c := New(pool, time.Hour, emit)
		input := randomBytes(3 * size)
		writeDone := make(chan error, 1)
		go func() {
			_, err := c.Write(input)
			writeDone <- err
		}()
		for i := range 3 {
			msg := receive(t, entered, fmt.Sprintf("message %d", i))
			if want := input[i*size : (i+1)*size]; !bytes.Equal(msg, want) {
				t.Fatalf("message %d = %x, want %x", i, msg, want)
			}
			synctest.Wait()
			select {
			case err := <-writeDone:
				t.Fatalf("Write returned (%v) while emit of message %d was blocked", err, i)
			default:
			}
			release <- struct{}{}
		}
		if err := receive(t, writeDone, "return from Write"); err != nil {
			t.Fatal(err)
		}
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
	})
}

// TestChunkerClockAndWriteWaitBehindEmit cannot use synctest: a Write waiting on a mutex
// is not "durably blocked", so it watches for quiet instead.
func TestChunkerClockAndWriteWaitBehindEmit(t *testing.T) {
	const size = 4
	pool := NewPool(size)
	emit, entered, release := blockingEmit(t, pool)
	c := New(pool, time.Millisecond, emit)
	input := randomBytes(1 + size)

	// One byte, left for the clock, which then blocks in emit.
	if _, err := c.Write(input[:1]); err != nil {
		t.Fatal(err)
	}
	if msg := receive(t, entered, "message from the clock"); !bytes.Equal(msg, input[:1]) {
		t.Fatalf("clock emitted %x, want %x", msg, input[:1])
	}

	// A full message, written while the clock's emit is blocked: it must wait.
	writeDone := make(chan error, 1)
	go func() {
		_, err := c.Write(input[1:])
		writeDone <- err
	}()
	expectBlocked(t, entered, writeDone, "the clock's emit was blocked")
	release <- struct{}{}
	if msg := receive(t, entered, "message from Write"); !bytes.Equal(msg, input[1:]) {
		t.Fatalf("Write emitted %x after the clock's message, want %x", msg, input[1:])
	}
	expectBlocked(t, entered, writeDone, "its own emit was blocked")
	release <- struct{}{}
	if err := receive(t, writeDone, "return from Write"); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestChunkerStickyError(t *testing.T) {
	const size = 8
	errEmit := errors.New("receiver gone")
	cases := []struct {
		name  string
		delay time.Duration
		// fail makes the first emit happen and returns the error it saw first.
		fail func(t *testing.T, c *Chunker, called <-chan struct{}) error
	}{
		{"full message in Write", time.Hour, func(t *testing.T, c *Chunker, _ <-chan struct{}) error {
			_, err := c.Write(make([]byte, size+1))
			return err
		}},
		{"end of Write without clock", 0, func(t *testing.T, c *Chunker, _ <-chan struct{}) error {
			_, err := c.Write([]byte("x"))
			return err
		}},
		{"Close", time.Hour, func(t *testing.T, c *Chunker, _ <-chan struct{}) error {
			if _, err := c.Write([]byte("x")); err != nil {
				t.Fatalf("Write before any emit: %v", err)
			}
			return c.Close()
		}},
		{"clock", time.Millisecond, func(t *testing.T, c *Chunker, called <-chan struct{}) error {
			if _, err := c.Write([]byte("x")); err != nil {
				t.Fatalf("Write before any emit: %v", err)
			}
			receive(t, called, "emit from the clock")
			// The clock holds the Chunker until emit returned and its error is kept.
			_, err := c.Write([]byte("y"))
			return err
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			pool := NewPool(size)
			var calls atomic.Int32
			called := make(chan struct{}, 1)
			c := New(pool, tc.delay, func(msg []byte) error {
				calls.Add(1)
				pool.Put(msg)
				select {
				case called <- struct{}{}:
				default: // a second call, which the test reports
				}
				return errEmit
			})
			if err := tc.fail(t, c, called); !errors.Is(err, errEmit) {
				t.Fatalf("first error = %v, want %v", err, errEmit)
			}
			if n, err := c.Write([]byte("z")); n != 0 || !errors.Is(err, errEmit) {
				t.Errorf("Write after the error = %d, %v; want 0, %v", n, err, errEmit)
			}
			if err := c.Close(); !errors.Is(err, errEmit) {
				t.Errorf("Close after the error = %v, want %v", err, errEmit)
			}
			if err := c.Close(); !errors.Is(err, errEmit) {
				t.Errorf("second Close = %v, want %v", err, errEmit)
			}
			if n := calls.Load(); n != 1 {
				t.Errorf("emit called %d times, want once", n)
			}
		})
	}
}

func TestChunkerAfterClose(t *testing.T) {
	for _, delay := range []time.Duration{0, time.Hour} {
		t.Run(fmt.Sprintf("delay=%v", delay), func(t *testing.T) {
			pool := NewPool(8)
			rec := &recorder{t: t, pool: pool}
			c := New(pool, delay, rec.emit)
			if _, err := c.Write([]byte("abc")); err != nil {
				t.Fatal(err)
			}
			if err := c.Close(); err != nil {
				t.Fatal(err)
			}
			if n, err := c.Write([]byte("d")); n != 0 || !errors.Is(err, ErrClosed) {
				t.Errorf("Write after Close = %d, %v; want 0, %v", n, err, ErrClosed)
			}
			if n, err := c.Write(nil); n != 0 || !errors.Is(err, ErrClosed) {
				t.Errorf("empty Write after Close = %d, %v; want 0, %v", n, err, ErrClosed)
			}
			if err := c.Close(); err != nil {
				t.Errorf("second Close = %v, want nil", err)
			}
			if messages, _ := rec.emitted(); !bytes.Equal(bytes.Join(messages, nil), []byte("abc")) {
				t.Errorf("emitted %q, want the bytes written before Close", messages)
			}
		})
	}
}

func TestChunkerEmitsNoEmptyMessage(t *testing.T) {
	cases := []struct {
		name string
		use  func(c *Chunker) error
	}{
		{"Close only", func(c *Chunker) error { return nil }},
		{"empty Write", func(c *Chunker) error {
			_, err := c.Write(nil)
			return err
		}},
		{"Close after a full message", func(c *Chunker) error {
			_, err := c.Write(make([]byte, 8))
			return err
		}},
	}
	for _, tc := range cases {
		for _, delay := range []time.Duration{0, time.Hour} {
			t.Run(fmt.Sprintf("%s/delay=%v", tc.name, delay), func(t *testing.T) {
				pool := NewPool(8)
				rec := &recorder{t: t, pool: pool}
				c := New(pool, delay, rec.emit)
				if err := tc.use(c); err != nil {
					t.Fatal(err)
				}
				if err := c.Close(); err != nil {
					t.Fatal(err)
				}
				messages, _ := rec.emitted()
				for i, m := range messages {
					if len(m) == 0 {
						t.Errorf("message %d of %d is empty", i, len(messages))
					}
				}
			})
		}
	}
}

// TestChunkerClockRacesWrites lets a fast clock emit while Write and Close run, for the
// race detector and goleak to judge, and checks that no byte is lost or reordered.
func TestChunkerClockRacesWrites(t *testing.T) {
	const size = 8
	pool := NewPool(size)
	rec := &recorder{t: t, pool: pool}
	c := New(pool, time.Microsecond, rec.emit)
	input := randomBytes(4000)
	rng := rand.New(rand.NewPCG(3, 4))
	for rest := input; len(rest) > 0; {
		n := min(rng.IntN(2*size)+1, len(rest))
		if _, err := c.Write(rest[:n]); err != nil {
			t.Fatal(err)
		}
		rest = rest[n:]
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	messages, _ := rec.emitted()
	for i, m := range messages {
		if len(m) == 0 || len(m) > size {
			t.Errorf("message %d has %d bytes, want 1 to %d", i, len(m), size)
		}
	}
	if !bytes.Equal(bytes.Join(messages, nil), input) {
		t.Error("messages do not join to the input")
	}
}

func TestPoolGet(t *testing.T) {
	for _, size := range []int{1, 100, 64 << 10} {
		pool := NewPool(size)
		for i := range 3 {
			b := pool.Get()
			if len(b) != 0 || cap(b) != size {
				t.Errorf("Get %d: len %d cap %d, want len 0 cap %d", i, len(b), cap(b), size)
			}
			pool.Put(b[:size/2+1]) // a used buffer comes back with bytes in it
		}
	}
}

func TestPoolPutIgnoresWrongCapacity(t *testing.T) {
	const size = 16
	cases := []struct {
		name string
		b    []byte
	}{
		{"nil", nil},
		{"empty", []byte{}},
		{"smaller", make([]byte, 0, size-1)},
		{"larger", make([]byte, 0, size+1)},
		{"len Size, larger cap", make([]byte, size, 2*size)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			pool := NewPool(size)
			// Several times, because a sync.Pool may drop what it is given.
			for range 8 {
				pool.Put(tc.b)
			}
			for i := range 8 {
				if b := pool.Get(); len(b) != 0 || cap(b) != size {
					t.Fatalf("Get %d: len %d cap %d, want len 0 cap %d", i, len(b), cap(b), size)
				}
			}
		})
	}
}

func TestNewPoolRejectsNonPositiveSize(t *testing.T) {
	for _, size := range []int{0, -1} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("NewPool(%d) did not panic", size)
				}
			}()
			NewPool(size)
		}()
	}
}

// BenchmarkChunker writes 16 KiB at a time into 64 KiB messages. With the clock on,
// four writes make one message; without it (delay=0s) each write is emitted at once,
// as a 16 KiB message in a 64 KiB buffer.
func BenchmarkChunker(b *testing.B) {
	const messageSize, writeSize = 64 << 10, 16 << 10
	for _, delay := range []time.Duration{0, 10 * time.Millisecond} {
		b.Run(fmt.Sprintf("delay=%v", delay), func(b *testing.B) {
			pool := NewPool(messageSize)
			c := New(pool, delay, func(msg []byte) error {
				pool.Put(msg)
				return nil
			})
			p := randomBytes(writeSize)
			b.SetBytes(writeSize)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.Write(p); err != nil {
					b.Fatal(err)
				}
			}
			if err := c.Close(); err != nil {
				b.Fatal(err)
			}
		})
	}
}
