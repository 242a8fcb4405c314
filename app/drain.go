package app

import (
	"log/slog"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"

	"github.com/bodystream/bodystream/server"
)

// state is what the probes report: the server, its gRPC health service, and whether
// a drain has begun.
type state struct {
	srv      *server.Server
	health   *health.Server
	draining atomic.Bool
	// budget is srv, apart so that readiness can be tested with any history.
	budget         interface{ BudgetExhaustedSince() (time.Time, bool) }
	budgetSpentFor time.Duration
}

// cutGrace is how long streams cut at the drain timeout get to end with their
// UNAVAILABLE status before the connections close under them.
const cutGrace = 2 * time.Second

// drain stops the server without cutting uploads that fit in the drain timeout:
//  1. readiness and the gRPC health service say not serving at once, so that Envoy's
//     health checks and the orchestrator stop sending new requests here;
//  2. after delay, new ext_proc streams are refused with UNAVAILABLE and the listener
//     closes (GracefulStop), while the streams in flight go on;
//  3. after timeout, the streams still open end with UNAVAILABLE, which Envoy turns
//     into a failed request: never a complete response with a truncated body.
func (st *state) drain(log *slog.Logger, g *grpc.Server, delay, timeout time.Duration) {
	st.draining.Store(true)
	st.health.Shutdown()
	log.Info("draining: readiness and gRPC health now NOT_SERVING; still accepting streams", "open_streams", st.srv.OpenStreams(), "drain_delay", delay)
	time.Sleep(delay)

	st.srv.RefuseNewStreams()
	log.Info("draining: refusing new streams, waiting for those in flight", "open_streams", st.srv.OpenStreams(), "drain_timeout", timeout)
	stopped := make(chan struct{})
	go func() {
		g.GracefulStop()
		close(stopped)
	}()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case <-stopped:
		log.Info("drained: every stream finished", "open_streams", st.srv.OpenStreams())
		return
	case <-timer.C:
	}
	cut := st.srv.CutOpenStreams()
	log.Warn("drain timeout passed: cutting the streams still open with UNAVAILABLE; their requests fail", "open_streams", cut, "drain_timeout", timeout)
	select {
	case <-stopped:
	case <-time.After(cutGrace):
		left := st.srv.OpenStreams()
		log.Warn("closing connections under streams that did not end when cut", "open_streams", left)
		g.Stop()
		<-stopped
	}
	log.Info("stopped", "open_streams", st.srv.OpenStreams())
}
