package server

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// ServiceName is the ext_proc service's full name, as the gRPC health service and
// Envoy's grpc_health_check know it.
const ServiceName = "envoy.service.ext_proc.v3.ExternalProcessor"

// processMethod is the ext_proc stream's full method name.
const processMethod = "/" + ServiceName + "/Process"

// drain is what the server knows of a shutdown in progress: whether new streams are
// still admitted, and the streams in flight so that they can be counted and, past
// the drain timeout, ended with a status that says why.
type drain struct {
	refusing atomic.Bool
	mu       sync.Mutex
	open     map[*drainStream]struct{}
	// budgetFullSince is when BudgetExhaustedSince first saw the budget full, in
	// UnixNano; 0 while it has room.
	budgetFullSince atomic.Int64
}

// drainStream is an ext_proc stream whose context the drain can end.
type drainStream struct {
	grpc.ServerStream
	ctx    context.Context
	cancel context.CancelCauseFunc
}

func (s *drainStream) Context() context.Context { return s.ctx }

// ErrDrainTimeout is the cause given to the streams still open when the drain
// timeout passes; they end with UNAVAILABLE.
var ErrDrainTimeout = errors.New("drain timeout passed before the stream finished")

// StreamInterceptor counts ext_proc streams, refuses new ones with UNAVAILABLE once
// RefuseNewStreams was called, and ends the stream with UNAVAILABLE when
// CutOpenStreams cut it, whatever the handler returned: a body cut at shutdown must
// reach Envoy as a failed stream, never as one that ended well. Other services
// (health) pass through.
func (s *Server) StreamInterceptor() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		if info.FullMethod != processMethod {
			return handler(srv, ss)
		}
		if s.drain.refusing.Load() {
			return status.Error(codes.Unavailable, "bodystream is shutting down and accepts no new stream")
		}
		ctx, cancel := context.WithCancelCause(ss.Context())
		defer cancel(nil)
		ds := &drainStream{ServerStream: ss, ctx: ctx, cancel: cancel}
		s.drain.mu.Lock()
		if s.drain.open == nil {
			s.drain.open = map[*drainStream]struct{}{}
		}
		s.drain.open[ds] = struct{}{}
		s.drain.mu.Unlock()
		defer func() {
			s.drain.mu.Lock()
			delete(s.drain.open, ds)
			s.drain.mu.Unlock()
		}()
		err := handler(srv, ds)
		if errors.Is(context.Cause(ctx), ErrDrainTimeout) {
			return status.Error(codes.Unavailable, "bodystream shut down: "+ErrDrainTimeout.Error())
		}
		return err
	}
}

// OpenStreams is the number of ext_proc streams in flight.
func (s *Server) OpenStreams() int {
	s.drain.mu.Lock()
	defer s.drain.mu.Unlock()
	return len(s.drain.open)
}

// RefuseNewStreams makes every later ext_proc stream fail at once with UNAVAILABLE,
// so that Envoy retries it elsewhere or fails the request cleanly before any body
// has gone through.
func (s *Server) RefuseNewStreams() { s.drain.refusing.Store(true) }

// CutOpenStreams ends every ext_proc stream in flight with UNAVAILABLE and returns
// how many it cut. A handler busy with a body returns at its next step; one that
// waits for Envoy's next message stays in Recv, which only the stream's own end
// interrupts, so the caller stops the gRPC server (closing its connections) once
// the busy ones have had a moment.
func (s *Server) CutOpenStreams() int {
	s.drain.mu.Lock()
	defer s.drain.mu.Unlock()
	for ds := range s.drain.open {
		ds.cancel(ErrDrainTimeout)
	}
	return len(s.drain.open)
}

// BudgetExhaustedSince reports whether the memory budget is spent, and since when.
// Spent means that streams are queued for it, or that less than a sixteenth of it
// (at least one chunk) is free: a new body's reservation, typically a few chunks
// and its stages' windows, would wait and then be refused with 503. Since is the
// first call that found it spent in an unbroken run of calls that all did: readiness
// probes call it, so its resolution is theirs. Without a budget it is never spent.
func (s *Server) BudgetExhaustedSince() (time.Time, bool) {
	b := s.budget
	if b == nil {
		return time.Time{}, false
	}
	probe := min(max(int64(s.opts.ChunkSize), b.total/16), b.total)
	if b.sem.TryAcquire(probe) {
		b.sem.Release(probe)
		s.drain.budgetFullSince.Store(0)
		return time.Time{}, false
	}
	s.drain.budgetFullSince.CompareAndSwap(0, time.Now().UnixNano())
	return time.Unix(0, s.drain.budgetFullSince.Load()), true
}
