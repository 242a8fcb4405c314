package server

import (
	"context"
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/semaphore"
)

// budget is the memory all streams draw from. An HTTP exchange is admitted once, at
// its first request message: it reserves what its request body and its response body
// will hold together (stream.admit), so that load makes new exchanges wait and then be
// refused, never grows bodystream past the budget, and never refuses a response whose
// request the upstream may already have carried out.
type budget struct {
	sem   *semaphore.Weighted
	total int64
	wait  time.Duration
	inUse prometheus.Gauge
}

// newBudget returns nil, which admits everything, for a total of 0.
func newBudget(total int64, wait time.Duration, inUse prometheus.Gauge) *budget {
	if total <= 0 {
		return nil
	}
	return &budget{sem: semaphore.NewWeighted(total), total: total, wait: wait, inUse: inUse}
}

// acquire reserves n bytes, waiting at most the admission wait. A body larger than
// the whole budget reserves all of it and runs alone. It returns what it reserved.
func (b *budget) acquire(ctx context.Context, n int64) (int64, error) {
	if b == nil || n <= 0 {
		return 0, nil
	}
	n = min(n, b.total)
	if !b.sem.TryAcquire(n) {
		waitCtx, cancel := context.WithTimeout(ctx, b.wait)
		defer cancel()
		if err := b.sem.Acquire(waitCtx, n); err != nil {
			if ctx.Err() != nil {
				return 0, context.Cause(ctx)
			}
			if errors.Is(err, context.DeadlineExceeded) {
				return 0, errOverloaded
			}
			return 0, err
		}
	}
	b.inUse.Add(float64(n))
	return n, nil
}

// tryAcquire reserves n bytes if they are free now, without waiting.
func (b *budget) tryAcquire(n int64) bool {
	if b == nil || n <= 0 {
		return true
	}
	if !b.sem.TryAcquire(n) {
		return false
	}
	b.inUse.Add(float64(n))
	return true
}

func (b *budget) release(n int64) {
	if b == nil || n == 0 {
		return
	}
	b.inUse.Sub(float64(n))
	b.sem.Release(n)
}

// grpcWriteQuota is grpc-go's per-stream write quota (internal/transport
// defaultWriteQuota): Send returns once a message is queued and the stream has less
// than this much queued unwritten.
const grpcWriteQuota = 64 << 10

// transportHolds is what one stream holds while a body moves, whatever its pipelines:
// the unread bytes its fixed stream window admits, the received message being handled
// (taken as one chunk: Envoy sends streamed bodies in pieces of its read buffers), the
// message in the send queue and the one in Send, and the marshalled copies grpc-go
// holds behind them (its write quota, the message past it, and the one in Send waiting
// for quota).
func (s *Server) transportHolds() int64 {
	chunk := int64(s.opts.ChunkSize)
	return int64(s.opts.StreamWindow) + chunk + sendQueueSlots*chunk + chunk + grpcWriteQuota + 2*chunk
}
