package server

import (
	"time"

	"github.com/bodystream/bodystream/config"
)

// Options are what the server needs of the configuration; config's fields of the
// same names document them.
type Options struct {
	ChunkSize       int           // largest body message sent to Envoy
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
