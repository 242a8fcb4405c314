package server

import (
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/protobuf/proto"

	"github.com/bodystream/bodystream/config"
	"github.com/bodystream/bodystream/stage"
)

// Options are what the server needs of the configuration; config's fields of the
// same names document them.
type Options struct {
	ChunkSize       int           // largest body message sent to Envoy, framing included
	FlushDelay      time.Duration // how long a partial message waits for more
	MaxBufferedBody int           // largest body in one message (BUFFERED)

	StreamWindow, ConnWindow int // fixed HTTP/2 windows
	MaxConcurrentStreams     uint32
	KeepaliveTime            time.Duration

	MemoryBudget  int64         // all bodies' reservations together; 0: unlimited
	AdmissionWait time.Duration // how long a body waits for budget before its 503
	RetryAfter    time.Duration // sent with that 503
}

// OptionsFrom takes a validated configuration's server options.
func OptionsFrom(cfg *config.Config) Options {
	return Options{
		ChunkSize:            int(cfg.ChunkSize),
		FlushDelay:           time.Duration(cfg.FlushDelay),
		MaxBufferedBody:      int(cfg.MaxBufferedBody),
		StreamWindow:         int(cfg.GRPC.StreamWindow),
		ConnWindow:           int(cfg.GRPC.ConnWindow),
		MaxConcurrentStreams: cfg.GRPC.MaxConcurrentStreams,
		KeepaliveTime:        time.Duration(cfg.GRPC.KeepaliveTime),
		MemoryBudget:         int64(cfg.Memory.Budget),
		AdmissionWait:        time.Duration(cfg.Memory.AdmissionWait),
		RetryAfter:           time.Duration(cfg.Memory.RetryAfter),
	}
}

// bodyPayload is how many body bytes one message bodystream cuts (FULL_DUPLEX_STREAMED)
// may carry so that the whole ProcessingResponse, protobuf framing included, is at
// most chunkSize bytes. Envoy's max_receive_message_length bounds the message, not the
// body in it: with chunk_size equal to that limit, a full body chunk must still fit.
// The chunker's buffers have this capacity, so this is the one place that caps it.
func bodyPayload(chunkSize int) int { return chunkSize - bodyFraming(chunkSize) }

// bodyFraming is the most bytes protobuf adds around a body of n bytes in any message
// that carries cut body bytes. It grows with n only through the varint lengths, so
// the framing of chunkSize bytes bounds the framing of any smaller payload.
func bodyFraming(n int) int {
	body := make([]byte, n)
	worst := 0
	for _, resp := range cutBodyMessages(body) {
		worst = max(worst, proto.Size(resp)-n)
	}
	return worst
}

// cutBodyMessages are the shapes of every message that carries body bytes the chunker
// cut: a FULL_DUPLEX_STREAMED streamed_response of either direction, with or without
// end_of_stream. No header mutation or dynamic metadata rides on them: the result
// travels on the last message, which carries no body bytes (fullDuplexMode.body).
func cutBodyMessages(body []byte) []*extprocv3.ProcessingResponse {
	var out []*extprocv3.ProcessingResponse
	for _, dir := range []stage.Direction{stage.Request, stage.Response} {
		for _, eos := range []bool{false, true} {
			out = append(out, streamedBodyResponse(dir, body, eos, stage.Result{}))
		}
	}
	return out
}

// routeMetadataKey is the gRPC initial metadata an envoy.yaml route sets
// (grpc_initial_metadata) to name its bodystream route.
const routeMetadataKey = "x-bodystream-route"

// attributesKey is where Envoy puts the configured request_attributes.
const attributesKey = "envoy.filters.http.ext_proc"

// unknownRoute makes a route name that bodystream's configuration lacks visible:
// the request falls through to Envoy's route name, the path prefixes and the default
// pipelines, which is rarely what the envoy.yaml that named it meant.
//
// The names remembered are capped: an envoy.yaml that fills the metadata from a
// request header would otherwise let clients grow the set without bound.
func (s *Server) unknownRoute(name string) {
	s.metrics.unknownRoutes.Inc()
	if _, seen := s.unknownRouteNames.Load(name); seen {
		return
	}
	switch n := s.unknownRouteCount.Add(1); {
	case n <= maxUnknownRouteNames:
		if _, seen := s.unknownRouteNames.LoadOrStore(name, true); !seen {
			s.log.Warn("x-bodystream-route names no configured route; using the path prefixes and the default", "route", name)
			return
		}
		s.unknownRouteCount.Add(-1)
	case n == maxUnknownRouteNames+1:
		s.log.Warn("more unknown x-bodystream-route names than are logged one by one; bodystream_unknown_route_total counts the rest", "logged", maxUnknownRouteNames)
	}
}

// maxUnknownRouteNames is how many unknown route names are logged one by one.
const maxUnknownRouteNames = 64
