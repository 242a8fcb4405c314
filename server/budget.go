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
