// Package server implements Envoy's ext_proc protocol: one state machine per stream and
// direction, feeding each body through its route's pipeline and answering Envoy with
// bounded messages. It is the only package that knows gRPC and Envoy.
package server

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"

	"github.com/bodystream/bodystream/chunker"
	"github.com/bodystream/bodystream/pipeline"
)

// Server answers Envoy's ext_proc streams.
type Server struct {
	extprocv3.UnimplementedExternalProcessorServer

	opts    Options
	router  *pipeline.Router
	pool    *chunker.Pool
	log     *slog.Logger
	metrics *metrics
	budget  *budget
	drain   drain // health.go
	// unknownRouteNames remembers the route names already reported, so that a
	// misnamed route in envoy.yaml is logged once, not once per request.
	unknownRouteNames sync.Map
	unknownRouteCount atomic.Int64
}

// New returns a Server with options o (checked by the configuration that made them)
// choosing each request's pipelines with router.
func New(o Options, router *pipeline.Router, log *slog.Logger, opts ...Option) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		opts:    o,
		router:  router,
		pool:    chunker.NewPool(bodyPayload(o.ChunkSize)),
		log:     log,
		metrics: newMetrics(router, o.MemoryBudget),
	}
	s.budget = newBudget(o.MemoryBudget, o.AdmissionWait, s.metrics.budgetInUse)
	for _, opt := range opts {
		opt(s)
	}
	return s
}

// GRPCServerOptions bound what Envoy can push into bodystream. Fixed windows turn off
// grpc-go's automatic window growth (up to 16 MiB a stream): a stream whose pipeline is
// full stops reading, its window fills, and Envoy's side-stream watermark pauses the
// client. The receive limit admits the largest BUFFERED body plus protobuf framing.
// The codec's pool fits bodystream's message sizes (see codec.go).
func (s *Server) GRPCServerOptions() []grpc.ServerOption {
	o := s.opts
	return append(s.codecOptions(),
		grpc.ChainStreamInterceptor(s.metrics.grpc.StreamServerInterceptor()),
		grpc.ChainUnaryInterceptor(s.metrics.grpc.UnaryServerInterceptor()),
		grpc.StaticStreamWindowSize(int32(o.StreamWindow)),
		grpc.StaticConnWindowSize(int32(o.ConnWindow)),
		grpc.MaxRecvMsgSize(o.MaxBufferedBody+64<<10),
		grpc.MaxConcurrentStreams(o.MaxConcurrentStreams),
		grpc.ReadBufferSize(64<<10),
		grpc.WriteBufferSize(64<<10),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: o.KeepaliveTime, Timeout: 20 * time.Second}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
	)
}

// Register adds the ext_proc service to a gRPC server, and sets the gRPC server
// metrics of every method g serves by now to 0.
func (s *Server) Register(g *grpc.Server) {
	extprocv3.RegisterExternalProcessorServer(g, s)
	s.metrics.grpc.InitializeMetrics(g)
}

// errStreamDone ends the send loop after a message that nothing may follow
// (an ImmediateResponse).
var errStreamDone = errors.New("stream answered with an immediate response")

// Process serves one HTTP request's ext_proc stream. The calling goroutine receives
// and runs the state machines; one more goroutine sends. Both end with the stream.
func (s *Server) Process(grpcStream extprocv3.ExternalProcessor_ProcessServer) error {
	began := time.Now()
	ctx, cancel := context.WithCancelCause(grpcStream.Context())
	defer cancel(nil)
	s.metrics.streamsStarted.Inc()
	s.metrics.streamsActive.Inc()
	defer s.metrics.streamsActive.Dec()
	st := newStream(ctx, s, grpcStream)

	sendDone := make(chan error, 1)
	go func() { sendDone <- st.sendLoop(cancel) }()

	recvErr := st.recvLoop()
	if recvErr != nil {
		cancel(recvErr)
	}
	st.closeQueue()
	sendErr := <-sendDone
	s.budget.release(st.transport)
	result, err := st.result(recvErr, sendErr)
	st.end(result, began, recvErr, sendErr)
	return err
}

// endedByEnvoy reports errors that mean Envoy closed or reset the stream: normal after
// the last response (Envoy resets as soon as it needs nothing more) and when the
// client goes away.
func endedByEnvoy(err error) bool {
	if errors.Is(err, io.EOF) || errors.Is(err, context.Canceled) {
		return true
	}
	c := status.Code(err)
	return c == codes.Canceled || c == codes.Unavailable
}

func (s *Server) retryAfterSeconds() int {
	return max(1, int(s.opts.RetryAfter/time.Second))
}
