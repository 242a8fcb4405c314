package server

import (
	"strconv"

	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/bodystream/bodystream/internal/version"
	"github.com/bodystream/bodystream/pipeline"
	"github.com/bodystream/bodystream/stage"
)

// Stream results, the values of the result label and of the end-of-stream log line's
// outcome.
const (
	resultOK            = "ok"             // every body that started completed
	resultRejected      = "rejected"       // an ImmediateResponse answered the client
	resultProtocolError = "protocol_error" // Envoy broke the protocol; the stream ended with its gRPC status
	resultFailed        = "failed"         // bodystream failed; the stream ended with INTERNAL
	resultCancelled     = "cancelled"      // Envoy reset the stream before a body that started had ended
)

var streamResults = []string{resultOK, resultRejected, resultProtocolError, resultFailed, resultCancelled}

// Spurious message reasons: messages from Envoy that bodystream did not act on.
const (
	spuriousAfterImmediate    = "after_immediate_response" // ignored: the stream was already answered
	spuriousProtocolViolation = "protocol_violation"       // ended the stream with a gRPC status
)

// messageKind indexes the ext_proc message types, the values of the message label.
type messageKind int

const (
	msgRequestHeaders messageKind = iota
	msgRequestBody
	msgRequestTrailers
	msgResponseHeaders
	msgResponseBody
	msgResponseTrailers
	msgImmediateResponse // sent only
	msgOther             // received: a message bodystream does not know; sent: never
	numMessageKinds
)

var messageKindNames = [numMessageKinds]string{
	"request_headers", "request_body", "request_trailers",
	"response_headers", "response_body", "response_trailers",
	"immediate_response", "other",
}

func (k messageKind) String() string { return messageKindNames[k] }

// Histogram buckets in seconds. Uploads last from milliseconds (a small JSON body) to
// many minutes (GiBs through a slow client); the first output of a body comes after
// its pipeline's preview, usually well under a second.
var (
	durationBuckets    = []float64{0.005, 0.025, 0.1, 0.25, 1, 2.5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600}
	firstOutputBuckets = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}
)

// metrics are bodystream's Prometheus series, all named bodystream_*. Every labelled
// series exists from the start with 0 (newMetrics), so that a fresh process exports
// what alerts and rate() need. A Server without WithMetrics counts into collectors
// nobody reads.
type metrics struct {
	streamsActive  prometheus.Gauge
	streamsStarted prometheus.Counter
	streamsClosed  prometheus.Counter // the stream ended with OK
	streamsFailed  prometheus.Counter // the stream ended with a gRPC error
	streams        *prometheus.CounterVec
	streamDuration *prometheus.HistogramVec
	firstOutput    *prometheus.HistogramVec

	messagesReceived, messagesSent *prometheus.CounterVec
	spurious                       *prometheus.CounterVec
	immediateResponses             *prometheus.CounterVec
	bodyBytes                      *prometheus.CounterVec

	budgetInUse, budgetSize prometheus.Gauge
	// passedUntouched counts bodies passed through untransformed because their share
	// of the budget could not be had once refusing was no longer allowed.
	passedUntouched *prometheus.CounterVec
	// invariantViolations counts bugs caught inside bodystream (invariants.go).
	invariantViolations *prometheus.CounterVec
	unknownRoutes       prometheus.Counter
	buildInfo           *prometheus.GaugeVec
	grpc                *grpcprom.ServerMetrics

	// Resolved once: a label lookup per message would cost more than the count. The
	// kinds that cannot occur on a side are nil.
	received, sent [numMessageKinds]prometheus.Counter
}

func newMetrics(router *pipeline.Router, budgetSize int64) *metrics {
	m := &metrics{
		streamsActive: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "bodystream_streams_active", Help: "ext_proc streams being served.",
		}),
		streamsStarted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "bodystream_streams_started_total", Help: "ext_proc streams opened by Envoy (Envoy: ext_proc.streams_started).",
		}),
		streamsClosed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "bodystream_streams_closed_total", Help: "ext_proc streams that ended with gRPC OK (Envoy: ext_proc.streams_closed).",
		}),
		streamsFailed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "bodystream_streams_failed_total", Help: "ext_proc streams that ended with a gRPC error status (Envoy: ext_proc.streams_failed).",
		}),
		streams: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bodystream_streams_total", Help: "ext_proc streams ended, by result: ok, rejected, protocol_error, failed, cancelled.",
		}, []string{"result"}),
		streamDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "bodystream_stream_duration_seconds", Help: "Time from the stream's start to its end, by result.",
			Buckets: durationBuckets,
		}, []string{"result"}),
		firstOutput: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "bodystream_first_output_seconds", Help: "Time from a direction's first message from Envoy to bodystream's first body reply for it.",
			Buckets: firstOutputBuckets,
		}, []string{"direction"}),
		messagesReceived: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bodystream_stream_messages_received_total", Help: "ext_proc messages received from Envoy, by message (Envoy: ext_proc.stream_msgs_sent).",
		}, []string{"message"}),
		messagesSent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bodystream_stream_messages_sent_total", Help: "ext_proc messages sent to Envoy, by message (Envoy: ext_proc.stream_msgs_received).",
		}, []string{"message"}),
		spurious: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bodystream_spurious_messages_total", Help: "Messages from Envoy that bodystream did not expect, by reason (Envoy's counterpart: ext_proc.spurious_msgs_received).",
		}, []string{"reason"}),
		immediateResponses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bodystream_immediate_responses_total", Help: "Immediate responses sent to the client instead of the body, by HTTP status and reason.",
		}, []string{"status", "reason"}),
		bodyBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bodystream_body_bytes_total", Help: "Body bytes received from (side=in) and sent to (side=out) Envoy, by route, pipeline and direction.",
		}, []string{"route", "pipeline", "direction", "side"}),
		budgetInUse: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "bodystream_memory_budget_in_use_bytes", Help: "Bytes of the memory budget reserved by running bodies.",
		}),
		budgetSize: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "bodystream_memory_budget_bytes", Help: "Size of the memory budget; 0 means unlimited.",
		}),
		passedUntouched: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bodystream_budget_passed_untouched_total", Help: "Bodies passed through untransformed because the memory budget was spent after the upstream may have seen the request, by direction.",
		}, []string{"direction"}),
		invariantViolations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bodystream_invariant_violations_total", Help: "Bodies failed because bodystream's own byte accounting did not add up, by invariant; any is a bug.",
		}, []string{"invariant"}),
		unknownRoutes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "bodystream_unknown_route_total", Help: "Streams whose x-bodystream-route names no configured route (the first names are logged once each).",
		}),
		buildInfo: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "bodystream_build_info", Help: "Always 1; the labels say what was built.",
		}, []string{"version", "commit", "goversion"}),
		grpc: grpcprom.NewServerMetrics(
			grpcprom.WithServerCounterOptions(grpcprom.WithNamespace("bodystream")),
			grpcprom.WithServerHandlingTimeHistogram(grpcprom.WithHistogramNamespace("bodystream"),
				grpcprom.WithHistogramBuckets(durationBuckets)),
		),
	}
	m.budgetSize.Set(float64(max(budgetSize, 0)))
	v := version.Get()
	m.buildInfo.WithLabelValues(v.Version, v.Commit, v.GoVersion).Set(1)

	for _, r := range streamResults {
		m.streams.WithLabelValues(r)
		m.streamDuration.WithLabelValues(r)
	}
	for _, d := range []stage.Direction{stage.Request, stage.Response} {
		m.firstOutput.WithLabelValues(d.String())
	}
	for k := range numMessageKinds {
		if k != msgImmediateResponse { // Envoy never sends one
			m.received[k] = m.messagesReceived.WithLabelValues(k.String())
		}
		if k != msgOther { // bodystream sends only what it knows
			m.sent[k] = m.messagesSent.WithLabelValues(k.String())
		}
	}
	for _, r := range []string{spuriousAfterImmediate, spuriousProtocolViolation} {
		m.spurious.WithLabelValues(r)
	}
	for _, r := range rejectionReasons {
		for _, code := range r.statuses() {
			m.immediateResponses.WithLabelValues(strconv.Itoa(int(code)), r.reason)
		}
	}
	for _, inv := range []string{invariantPipeline, invariantOutput, invariantEndOfStream} {
		m.invariantViolations.WithLabelValues(inv)
	}
	for _, pair := range router.Routes() {
		m.routeBytes(pair, stage.Request)
		m.routeBytes(pair, stage.Response)
	}
	return m
}

// routeBytes returns the in and out byte counters of one route's direction.
func (m *metrics) routeBytes(pair pipeline.Pair, dir stage.Direction) (in, out prometheus.Counter) {
	p := pair.Request
	if dir == stage.Response {
		p = pair.Response
	}
	in = m.bodyBytes.WithLabelValues(pair.Route, p.Name, dir.String(), "in")
	out = m.bodyBytes.WithLabelValues(pair.Route, p.Name, dir.String(), "out")
	return in, out
}

func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{
		m.streamsActive, m.streamsStarted, m.streamsClosed, m.streamsFailed, m.streams,
		m.streamDuration, m.firstOutput, m.messagesReceived, m.messagesSent, m.spurious,
		m.immediateResponses, m.bodyBytes, m.budgetInUse, m.budgetSize, m.passedUntouched,
		m.invariantViolations, m.unknownRoutes, m.buildInfo, m.grpc,
	}
}

// Option configures a Server.
type Option func(*Server)

// WithMetrics registers the server's metrics with reg, including the standard gRPC
// server metrics of the interceptors GRPCServerOptions installs. The Go runtime and
// process collectors are the caller's (app registers them).
func WithMetrics(reg prometheus.Registerer) Option {
	return func(s *Server) { reg.MustRegister(s.metrics.collectors()...) }
}
