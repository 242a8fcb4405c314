package server

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are bodystream's Prometheus series. A Server without WithMetrics counts
// into collectors nobody reads.
type metrics struct {
	streamsActive prometheus.Gauge
	streams       *prometheus.CounterVec // by result: ok, rejected, protocol_error, failed
	rejections    *prometheus.CounterVec // by HTTP status sent in an ImmediateResponse
	bodyBytes     *prometheus.CounterVec // by direction and side (in: from Envoy, out: to Envoy)
	messages      *prometheus.CounterVec // by direction: body messages sent to Envoy
	budgetInUse   prometheus.Gauge
	// passedUntouched counts bodies passed through untransformed because their share
	// of the budget could not be had once refusing was no longer allowed.
	passedUntouched *prometheus.CounterVec
	// invariantViolations counts bugs caught inside bodystream (invariants.go).
	invariantViolations *prometheus.CounterVec
	unknownRoutes       prometheus.Counter
}

func newMetrics() *metrics {
	return &metrics{
		streamsActive: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "bodystream_streams_active", Help: "ext_proc streams being served.",
		}),
		streams: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bodystream_streams_total", Help: "ext_proc streams served, by result.",
		}, []string{"result"}),
		rejections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bodystream_rejections_total", Help: "Immediate responses sent, by HTTP status.",
		}, []string{"status"}),
		bodyBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bodystream_body_bytes_total", Help: "Body bytes received from (in) and sent to (out) Envoy.",
		}, []string{"direction", "side"}),
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bodystream_body_messages_total", Help: "Body messages received from (in) and sent to (out) Envoy.",
		}, []string{"direction", "side"}),
		budgetInUse: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "bodystream_memory_budget_in_use_bytes", Help: "Bytes of the memory budget reserved by running bodies.",
		}),
		passedUntouched: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bodystream_budget_passed_untouched_total", Help: "Bodies passed through untransformed because the memory budget was spent after the upstream may have seen the request, by direction.",
		}, []string{"direction"}),
		invariantViolations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bodystream_invariant_violations_total", Help: "Bodies failed because bodystream's own byte accounting did not add up, by invariant; any is a bug.",
		}, []string{"invariant"}),
		unknownRoutes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "bodystream_unknown_route_total", Help: "Streams whose x-bodystream-route names no configured route (logged once per name).",
		}),
	}
}

func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.streamsActive, m.streams, m.rejections, m.bodyBytes, m.messages, m.budgetInUse, m.passedUntouched, m.invariantViolations, m.unknownRoutes}
}

// Option configures a Server.
type Option func(*Server)

// WithMetrics registers the server's metrics with reg.
func WithMetrics(reg prometheus.Registerer) Option {
	return func(s *Server) { reg.MustRegister(s.metrics.collectors()...) }
}
