package server

import (
	"fmt"
	"slices"
	"sync"
	"sync/atomic"

	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/experimental"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
)

// GRPCServerOptions installs the codec and buffer pool here; BenchmarkCodecOptions
// measures them against grpc-go's defaults (bench/RESULTS.md).
//
// Why: grpc-go's default proto codec takes every message buffer from
// mem.DefaultBufferPool, whose tiers jump from 32 KiB to 1 MiB and which clears a
// buffer's whole capacity on every Get. A 64 KiB body message marshals to a little
// more than 64 KiB, so each one costs clearing 1 MiB (measured: about 30% of the CPU
// of an identity stream) and each message waiting in grpc-go's send path pins 1 MiB
// of heap, all of it resident since it was cleared.

// codecOptions are the server options that install bodystream's codec and buffer
// pool: the codec marshals and materialises messages with pool, the transport reads
// frames into it.
func (s *Server) codecOptions() []grpc.ServerOption {
	pool := newMessagePool(s.opts.ChunkSize)
	return []grpc.ServerOption{
		grpc.ForceServerCodecV2(newCodec(pool)),
		experimental.BufferPool(pool),
	}
}

// codec is protobuf on the wire, like grpc-go's default codec (it keeps that codec's
// name, "proto"), except that its buffers come from a pool whose sizes fit
// bodystream's messages, and that it decodes the receive loop's *received with the
// body as a view into the receive buffer instead of protobuf's copy (recv.go).
type codec struct {
	pool mem.BufferPool
}

func newCodec(pool mem.BufferPool) encoding.CodecV2 { return &codec{pool: pool} }

func (*codec) Name() string { return "proto" }

func (c *codec) Marshal(v any) (mem.BufferSlice, error) {
	m, ok := v.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("codec: cannot marshal %T, not a proto.Message", v)
	}
	size := proto.Size(m)
	marshal := func(b []byte) error {
		// UseCachedSize reuses the Size just computed; nothing mutates m meanwhile.
		out, err := proto.MarshalOptions{UseCachedSize: true}.MarshalAppend(b[:0], m)
		if err == nil && len(out) != size {
			err = fmt.Errorf("marshalled %d bytes of %T, sized %d", len(out), v, size)
		}
		return err
	}
	if mem.IsBelowBufferPoolingThreshold(size) {
		b := make([]byte, size)
		if err := marshal(b); err != nil {
			return nil, err
		}
		return mem.BufferSlice{mem.SliceBuffer(b)}, nil
	}
	b := c.pool.Get(size)
	if err := marshal(*b); err != nil {
		c.pool.Put(b)
		return nil, err
	}
	return mem.BufferSlice{mem.NewBuffer(b, c.pool)}, nil
}

func (c *codec) Unmarshal(data mem.BufferSlice, v any) error {
	if r, ok := v.(*received); ok {
		return unmarshalReceived(data, c.pool, r)
	}
	m, ok := v.(proto.Message)
	if !ok {
		return fmt.Errorf("codec: cannot unmarshal into %T, not a proto.Message", v)
	}
	buf := data.MaterializeToBuffer(c.pool)
	defer buf.Free()
	return proto.Unmarshal(buf.ReadOnlyData(), m)
}

// messagePool is a mem.BufferPool with size classes that fit bodystream's traffic:
// HTTP/2 frames (16 KiB), body messages of one chunk plus protobuf framing, and powers
// of two up to 4 MiB for larger messages (BUFFERED bodies); larger ones are allocated.
//
// Unlike grpc-go's default pool it does not clear buffers: every user of a mem
// BufferPool in grpc-go and in this codec writes the whole length it asked for
// (marshalling fills the buffer, materialising copies into it, the transport reads a
// frame into it with io.ReadFull) before anything reads it, so clearing is pure cost.
type messagePool struct {
	sizes []int
	pools []sync.Pool // of *[]byte with cap == sizes[i]
	// poison, for tests, overwrites every buffer put back with poisonByte, so that
	// whatever reads a received body after its message was freed reads garbage
	// instead of bytes that happen to still be right.
	poison   bool
	poisoned atomic.Int64 // buffers poisoned so far
}

const poisonByte = 0xDB

// messageOverhead is room for the protobuf framing around one chunk of body:
// the oneof, the mutation, the streamed response and their lengths take a few bytes;
// dynamic metadata on the same message a few hundred.
const messageOverhead = 4 << 10

func newMessagePool(chunkSize int) *messagePool {
	sizes := []int{4 << 10, 16 << 10, 32 << 10, chunkSize + messageOverhead}
	for s := 64 << 10; s <= 4<<20; s *= 2 {
		sizes = append(sizes, s)
	}
	slices.Sort(sizes)
	sizes = slices.Compact(sizes)
	return &messagePool{sizes: sizes, pools: make([]sync.Pool, len(sizes))}
}

// class returns the index of the smallest size class of at least n, or -1.
func (p *messagePool) class(n int) int {
	i, _ := slices.BinarySearch(p.sizes, n)
	if i == len(p.sizes) {
		return -1
	}
	return i
}

// Get returns a buffer of length n. Its bytes are not cleared.
func (p *messagePool) Get(n int) *[]byte {
	i := p.class(n)
	if i < 0 {
		b := make([]byte, n)
		return &b
	}
	if b, ok := p.pools[i].Get().(*[]byte); ok {
		*b = (*b)[:n]
		return b
	}
	b := make([]byte, n, p.sizes[i])
	return &b
}

// Put returns a buffer obtained from Get; one whose capacity is no size class is dropped.
func (p *messagePool) Put(b *[]byte) {
	c := cap(*b)
	if p.poison {
		full := (*b)[:c]
		for i := range full {
			full[i] = poisonByte
		}
		p.poisoned.Add(1)
	}
	if i := p.class(c); i >= 0 && p.sizes[i] == c {
		p.pools[i].Put(b)
	}
}
