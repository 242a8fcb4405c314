package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/bodystream/bodystream/config"
	"github.com/bodystream/bodystream/internal/syncbuf"
	"github.com/bodystream/bodystream/internal/version"
	"github.com/bodystream/bodystream/pipeline"
	"github.com/bodystream/bodystream/stage"
)

// observedConfig has a route for each stream outcome the tests drive, and a route
// known only by its path prefix.
const observedConfig = `
chunk_size: 4KiB
flush_delay: 0s
memory: {budget: 64MiB}
pipelines:
  gzip-now: [{gzip: {level: 1, preview_bytes: 0}}]
  unzip: [{decompress: {encoding: gzip}}]
routes:
  - {name: gzip, request: gzip-now, response: identity}
  - {name: unzip, request: unzip, response: identity}
  - {path_prefix: /up, request: gzip-now, response: gzip-now}
`

// observed is a served Server with its own registry and a JSON log.
type observed struct {
	*testServer
	reg *prometheus.Registry
	log *logBuffer
}

func newObserved(t *testing.T) *observed {
	t.Helper()
	cfg, err := config.Parse(strings.NewReader(observedConfig))
	if err != nil {
		t.Fatal(err)
	}
	router, err := pipeline.Build(cfg)
	if err != nil {
		t.Fatal(err)
	}
	o := &observed{reg: prometheus.NewRegistry(), log: &logBuffer{}}
	log := slog.New(slog.NewJSONHandler(o.log, &slog.HandlerOptions{Level: slog.LevelInfo}))
	o.testServer = serveTest(t, New(OptionsFrom(cfg), router, log, WithMetrics(o.reg)))
	return o
}

// logBuffer is a log the server's goroutines write while the test reads.
type logBuffer struct{ syncbuf.Buffer }

// lines returns the JSON log lines whose msg is msg.
func (b *logBuffer) lines(t *testing.T, msg string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for line := range strings.Lines(b.String()) {
		var fields map[string]any
		if err := json.Unmarshal([]byte(line), &fields); err != nil {
			t.Fatalf("log line is not JSON: %q: %v", line, err)
		}
		if fields["msg"] == msg {
			out = append(out, fields)
		}
	}
	return out
}

// series returns every series of reg as name{label="value",...} with its value; a
// histogram's value is its sample count.
func series(t *testing.T, reg prometheus.Gatherer) map[string]float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			key := f.GetName() + "{" + strings.Join(labels, ",") + "}"
			switch {
			case m.GetCounter() != nil:
				out[key] = m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				out[key] = m.GetGauge().GetValue()
			case m.GetHistogram() != nil:
				out[key] = float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return out
}

const extprocLabels = "grpc_method=Process,grpc_service=envoy.service.ext_proc.v3.ExternalProcessor,grpc_type=bidi_stream"

// TestFreshServerExportsEverySeries: before any stream, the registry holds every
// labelled series an alert or a rate() needs, at 0, and no bodystream_ series that
// the README does not list.
func TestFreshServerExportsEverySeries(t *testing.T) {
	o := newObserved(t)
	got := series(t, o.reg)
	v := version.Get()

	want := map[string]float64{
		"bodystream_streams_active{}":             0,
		"bodystream_streams_started_total{}":      0,
		"bodystream_streams_closed_total{}":       0,
		"bodystream_streams_failed_total{}":       0,
		"bodystream_memory_budget_in_use_bytes{}": 0,
		"bodystream_memory_budget_bytes{}":        64 << 20,
		"bodystream_unknown_route_total{}":        0,
		"bodystream_build_info{commit=" + v.Commit + ",goversion=" + v.GoVersion + ",version=" + v.Version + "}": 1,
		"bodystream_first_output_seconds{direction=request}":                                                     0,
		"bodystream_first_output_seconds{direction=response}":                                                    0,
		"bodystream_spurious_messages_total{reason=after_immediate_response}":                                    0,
		"bodystream_spurious_messages_total{reason=protocol_violation}":                                          0,
		"bodystream_invariant_violations_total{invariant=pipeline_accounting}":                                   0,
		"bodystream_invariant_violations_total{invariant=output_accounting}":                                     0,
		"bodystream_invariant_violations_total{invariant=end_of_stream_before_complete}":                         0,
	}
	for _, result := range []string{"ok", "rejected", "protocol_error", "failed", "cancelled"} {
		want["bodystream_streams_total{result="+result+"}"] = 0
		want["bodystream_stream_duration_seconds{result="+result+"}"] = 0
	}
	for _, msg := range []string{"request_headers", "request_body", "request_trailers", "response_headers", "response_body", "response_trailers"} {
		want["bodystream_stream_messages_received_total{message="+msg+"}"] = 0
		want["bodystream_stream_messages_sent_total{message="+msg+"}"] = 0
	}
	want["bodystream_stream_messages_received_total{message=other}"] = 0
	want["bodystream_stream_messages_sent_total{message=immediate_response}"] = 0
	for _, sr := range []string{
		"403,scan_rule", "503,budget", "507,storage_full",
		"413,bomb", "502,bomb", "413,limit", "502,limit", "400,corrupt_input", "502,corrupt_input",
		"415,unsupported_encoding", "502,unsupported_encoding", "500,streamed_trailers", "502,streamed_trailers",
		"500,invariant", "502,invariant", "500,internal", "502,internal",
	} {
		code, reason, _ := strings.Cut(sr, ",")
		want["bodystream_immediate_responses_total{reason="+reason+",status="+code+"}"] = 0
	}
	// Every configured route, named or by prefix, and the default: both directions
	// with their pipelines, both sides.
	for _, rp := range []string{
		"gzip,request,gzip-now", "gzip,response,identity",
		"unzip,request,unzip", "unzip,response,identity",
		"/up,request,gzip-now", "/up,response,gzip-now",
		"default,request,identity", "default,response,identity",
	} {
		parts := strings.Split(rp, ",")
		for _, side := range []string{"in", "out"} {
			want["bodystream_body_bytes_total{direction="+parts[1]+",pipeline="+parts[2]+",route="+parts[0]+",side="+side+"}"] = 0
		}
	}
	grpcWant := []string{
		"bodystream_grpc_server_started_total{" + extprocLabels + "}",
		"bodystream_grpc_server_handled_total{grpc_code=OK," + extprocLabels + "}",
		"bodystream_grpc_server_handled_total{grpc_code=Internal," + extprocLabels + "}",
		"bodystream_grpc_server_msg_received_total{" + extprocLabels + "}",
		"bodystream_grpc_server_msg_sent_total{" + extprocLabels + "}",
		"bodystream_grpc_server_handling_seconds{" + extprocLabels + "}",
	}

	for _, key := range slices.Sorted(maps.Keys(want)) {
		value, ok := got[key]
		switch {
		case !ok:
			t.Errorf("missing %s", key)
		case value != want[key]:
			t.Errorf("%s = %v, want %v", key, value, want[key])
		}
	}
	for _, key := range grpcWant {
		if value, ok := got[key]; !ok || value != 0 {
			t.Errorf("%s: %v (present %v), want 0", key, value, ok)
		}
	}
	for key := range got {
		if _, listed := want[key]; !listed && strings.HasPrefix(key, "bodystream_") && !strings.HasPrefix(key, "bodystream_grpc_server_") {
			t.Errorf("unlisted series %s", key)
		}
	}
}

// fullDuplexUpload sends a request body through route in FULL_DUPLEX_STREAMED, without
// a response body, and returns what came back.
func fullDuplexUpload(t *testing.T, ts *testServer, route, requestID string, body []byte) []byte {
	t.Helper()
	e := ts.open(route)
	e.send(e.withConfig(requestHeaders(false, ":path", "/x", "x-request-id", requestID), modes{modeFullDuplex, modeNone}))
	e.recv()
	e.send(requestBody(body, true))
	out := e.streamedBodies(4 << 10)
	if err := e.s.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if err := e.recvErr(); !errors.Is(err, io.EOF) {
		t.Fatalf("stream ended with %v, want OK", err)
	}
	return out
}

// waitIdle waits, bounded, for the server to have finished every stream: a reset is
// learnt on the server's goroutines, after the client has moved on.
func waitIdle(t *testing.T, srv *Server) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); testutil.ToFloat64(srv.metrics.streamsActive) != 0; {
		if time.Now().After(deadline) {
			t.Fatal("stream still active 10s after it ended")
		}
		time.Sleep(time.Millisecond)
	}
}

// outcomeCases drive one stream of each outcome through a served Server. run returns
// what the series and the end line must show beyond the outcome's own counters.
var outcomeCases = []struct {
	outcome string
	run     func(t *testing.T, o *observed) (want map[string]float64, line map[string]any)
}{
	{resultOK, func(t *testing.T, o *observed) (map[string]float64, map[string]any) {
		body := randomBytes(20<<10, 1)
		out := fullDuplexUpload(t, o.testServer, "gzip", "r-ok", body)
		if !bytes.Equal(gunzip(t, out), body) {
			t.Fatal("body did not round-trip")
		}
		return map[string]float64{
				"bodystream_body_bytes_total{direction=request,pipeline=gzip-now,route=gzip,side=in}":  float64(len(body)),
				"bodystream_body_bytes_total{direction=request,pipeline=gzip-now,route=gzip,side=out}": float64(len(out)),
				"bodystream_stream_messages_received_total{message=request_headers}":                   1,
				"bodystream_stream_messages_received_total{message=request_body}":                      1,
				"bodystream_stream_messages_sent_total{message=request_headers}":                       1,
				"bodystream_first_output_seconds{direction=request}":                                   1,
				"bodystream_grpc_server_handled_total{grpc_code=OK," + extprocLabels + "}":             1,
			}, map[string]any{"request_id": "r-ok", "route": "gzip", "request.mode": "FULL_DUPLEX_STREAMED",
				"request.pipeline": "gzip-now", "request.in": float64(len(body)), "request.out": float64(len(out)),
				"response.mode": "NONE"}
	}},
	{resultRejected, func(t *testing.T, o *observed) (map[string]float64, map[string]any) {
		e := o.open("unzip")
		e.send(e.withConfig(requestHeaders(false, ":path", "/x", "x-request-id", "r-rej", "content-encoding", "gzip"), modes{modeBuffered, modeNone}))
		e.recv()
		e.send(requestBody([]byte("not gzip at all"), true))
		if code := e.recv().GetImmediateResponse().GetStatus().GetCode(); code != 400 {
			t.Fatalf("immediate response %v, want 400", code)
		}
		e.s.CloseSend()
		if err := e.recvErr(); !errors.Is(err, io.EOF) {
			t.Fatalf("stream ended with %v, want OK", err)
		}
		return map[string]float64{
				"bodystream_immediate_responses_total{reason=corrupt_input,status=400}":             1,
				"bodystream_stream_messages_sent_total{message=immediate_response}":                 1,
				"bodystream_body_bytes_total{direction=request,pipeline=unzip,route=unzip,side=in}": 15,
			}, map[string]any{"request_id": "r-rej", "route": "unzip", "status": float64(400), "reason": "corrupt_input",
				"request.mode": "BUFFERED", "request.pipeline": "unzip"}
	}},
	{resultProtocolError, func(t *testing.T, o *observed) (map[string]float64, map[string]any) {
		e := o.open("gzip")
		e.send(e.withConfig(requestHeaders(false, ":path", "/x", "x-request-id", "r-proto"), fullDuplex))
		e.recv()
		e.send(requestHeaders(false, ":path", "/x"))
		if err := e.recvErr(); status.Code(err) != codes.FailedPrecondition {
			t.Fatalf("stream ended with %v, want FAILED_PRECONDITION", err)
		}
		return map[string]float64{
			"bodystream_spurious_messages_total{reason=protocol_violation}":                            1,
			"bodystream_grpc_server_handled_total{grpc_code=FailedPrecondition," + extprocLabels + "}": 1,
		}, map[string]any{"request_id": "r-proto", "route": "gzip", "level": "WARN"}
	}},
	{resultCancelled, func(t *testing.T, o *observed) (map[string]float64, map[string]any) {
		e := o.open("")
		e.send(e.withConfig(requestHeaders(false, ":path", "/up/file", "x-request-id", "r-gone"), fullDuplex))
		e.recv()
		part := randomBytes(64<<10, 2)
		e.send(requestBody(part, false))
		e.recv() // output: the server has the part
		e.cancel()
		waitIdle(t, o.srv)
		return map[string]float64{
			"bodystream_body_bytes_total{direction=request,pipeline=gzip-now,route=/up,side=in}": float64(len(part)),
		}, map[string]any{"request_id": "r-gone", "route": "/up", "request.in": float64(len(part)), "request.ended": false}
	}},
	{resultFailed, func(t *testing.T, o *observed) (map[string]float64, map[string]any) {
		// A transport failure that is no gRPC status cannot be caused through a real
		// connection: drive Process with a stream whose Recv breaks.
		first := requestHeaders(false, ":path", "/x", "x-request-id", "r-fail")
		first.ProtocolConfig = &extprocv3.ProtocolConfiguration{RequestBodyMode: modeFullDuplex}
		fake := &brokenStream{recordingStream: recordingStream{ctx: t.Context()}, msgs: []*extprocv3.ProcessingRequest{first}}
		if err := o.srv.Process(fake); status.Code(err) != codes.Internal {
			t.Fatalf("Process returned %v, want INTERNAL", err)
		}
		return map[string]float64{}, map[string]any{"request_id": "r-fail", "route": "default", "level": "WARN"}
	}},
}

// brokenStream delivers msgs, then fails as a broken transport would.
type brokenStream struct {
	recordingStream
	msgs []*extprocv3.ProcessingRequest
}

func (b *brokenStream) Recv() (*extprocv3.ProcessingRequest, error) {
	if len(b.msgs) == 0 {
		return nil, errors.New("connection torn down")
	}
	m := b.msgs[0]
	b.msgs = b.msgs[1:]
	return m, nil
}

// RecvMsg is what the receive loop calls (recv.go): it fills the server's received.
func (b *brokenStream) RecvMsg(m any) error {
	req, err := b.Recv()
	if err != nil {
		return err
	}
	proto.Merge(&m.(*received).req, req)
	return nil
}

// TestStreamOutcomes: one stream of each outcome moves its result's series and the
// counters that go with it, and writes exactly one end line that says what happened.
func TestStreamOutcomes(t *testing.T) {
	for _, tc := range outcomeCases {
		t.Run(tc.outcome, func(t *testing.T) {
			o := newObserved(t)
			wantSeries, wantLine := tc.run(t, o)
			waitIdle(t, o.srv)

			failed := tc.outcome == resultProtocolError || tc.outcome == resultFailed
			wantSeries["bodystream_streams_started_total{}"] = 1
			wantSeries["bodystream_streams_active{}"] = 0
			wantSeries["bodystream_memory_budget_in_use_bytes{}"] = 0
			wantSeries["bodystream_streams_closed_total{}"] = map[bool]float64{false: 1, true: 0}[failed]
			wantSeries["bodystream_streams_failed_total{}"] = map[bool]float64{false: 0, true: 1}[failed]
			for _, result := range streamResults {
				n := map[bool]float64{false: 0, true: 1}[result == tc.outcome]
				wantSeries["bodystream_streams_total{result="+result+"}"] = n
				wantSeries["bodystream_stream_duration_seconds{result="+result+"}"] = n
			}
			got := series(t, o.reg)
			for _, key := range slices.Sorted(maps.Keys(wantSeries)) {
				if got[key] != wantSeries[key] {
					t.Errorf("%s = %v, want %v", key, got[key], wantSeries[key])
				}
			}

			lines := o.log.lines(t, "ext_proc stream ended")
			if len(lines) != 1 {
				t.Fatalf("%d end lines, want 1: %v", len(lines), lines)
			}
			line := flatten(lines[0])
			wantLine["outcome"] = tc.outcome
			if _, ok := wantLine["level"]; !ok {
				wantLine["level"] = "INFO"
			}
			for k, v := range wantLine {
				if line[k] != v {
					t.Errorf("end line %s = %v, want %v (line %v)", k, line[k], v, line)
				}
			}
			if d, ok := line["duration"].(float64); !ok || d <= 0 {
				t.Errorf("end line duration %v, want a positive duration", line["duration"])
			}
			if tc.outcome != resultOK && tc.outcome != resultCancelled && line["err"] == nil {
				t.Errorf("end line of a %s stream names no error: %v", tc.outcome, line)
			}
		})
	}
}

// flatten turns JSON groups into dotted keys, as the text handler writes them.
func flatten(fields map[string]any) map[string]any {
	out := map[string]any{}
	for k, v := range fields {
		if group, ok := v.(map[string]any); ok {
			for gk, gv := range group {
				out[k+"."+gk] = gv
			}
			continue
		}
		out[k] = v
	}
	return out
}

// TestUnknownRouteWarnsOncePerName: every stream naming an unknown route is counted;
// each name is logged at warn once.
func TestUnknownRouteWarnsOncePerName(t *testing.T) {
	o := newObserved(t)
	body := text(1000)
	for _, route := range []string{"nosuch", "nosuch", "other"} {
		fullDuplexUpload(t, o.testServer, route, "r-"+route, body)
	}
	if n := testutil.ToFloat64(o.srv.metrics.unknownRoutes); n != 3 {
		t.Errorf("bodystream_unknown_route_total = %v, want 3", n)
	}
	var names []string
	for _, line := range o.log.lines(t, "x-bodystream-route names no configured route; using the path prefixes and the default") {
		if line["level"] != "WARN" {
			t.Errorf("logged at %v, want WARN", line["level"])
		}
		names = append(names, line["route"].(string))
	}
	slices.Sort(names)
	if !slices.Equal(names, []string{"nosuch", "other"}) {
		t.Errorf("warned for %v, want nosuch and other once each", names)
	}
}

// TestUnknownRouteNamesAreCapped: names past the cap are counted, not remembered, and
// the cap is announced once.
func TestUnknownRouteNamesAreCapped(t *testing.T) {
	var logged logBuffer
	srv, _ := newServer(t, testConfig)
	srv.log = slog.New(slog.NewJSONHandler(&logged, nil))
	for i := range maxUnknownRouteNames + 10 {
		srv.unknownRoute("r" + itoa(i))
		srv.unknownRoute("r" + itoa(i))
	}
	remembered := 0
	srv.unknownRouteNames.Range(func(any, any) bool { remembered++; return true })
	perName := len(logged.lines(t, "x-bodystream-route names no configured route; using the path prefixes and the default"))
	capped := len(logged.lines(t, "more unknown x-bodystream-route names than are logged one by one; bodystream_unknown_route_total counts the rest"))
	if remembered != maxUnknownRouteNames || perName != maxUnknownRouteNames || capped != 1 {
		t.Errorf("remembered %d names, %d lines, %d cap lines; want %d, %d, 1", remembered, perName, capped, maxUnknownRouteNames, maxUnknownRouteNames)
	}
	if n := testutil.ToFloat64(srv.metrics.unknownRoutes); n != 2*(maxUnknownRouteNames+10) {
		t.Errorf("counted %v, want every stream", n)
	}
}

// TestDebugTraceCostsNothingWhenOff: with debug off, the per-message trace allocates
// nothing; with debug on it writes one line per message.
func TestDebugTraceCostsNothingWhenOff(t *testing.T) {
	for _, level := range []slog.Level{slog.LevelInfo, slog.LevelDebug} {
		var logged logBuffer
		srv, _ := newServer(t, testConfig)
		srv.log = slog.New(slog.NewJSONHandler(&logged, &slog.HandlerOptions{Level: level}))
		st := newStream(context.Background(), srv, nil)
		req := requestBody(text(100), false)
		out := outgoing{resp: streamedBodyResponse(stage.Request, text(100), false, stage.Result{})}
		if level == slog.LevelInfo {
			if allocs := testing.AllocsPerRun(100, func() { st.received(req); st.sent(out) }); allocs != 0 {
				t.Errorf("debug off: %v allocations per message pair, want 0", allocs)
			}
			continue
		}
		st.received(req)
		st.sent(out)
		if r, s := logged.lines(t, "ext_proc message received"), logged.lines(t, "ext_proc message sent"); len(r) != 1 || len(s) != 1 || r[0]["body_bytes"] != float64(100) || s[0]["message"] != "request_body" {
			t.Errorf("debug on: received %v, sent %v; want one line each", r, s)
		}
	}
}

// BenchmarkTraceDisabled measures the per-message observation with debug off.
func BenchmarkTraceDisabled(b *testing.B) {
	srv, _ := newServer(b, testConfig)
	st := newStream(context.Background(), srv, nil)
	req := requestBody(text(100), false)
	out := outgoing{resp: streamedBodyResponse(stage.Request, text(100), false, stage.Result{})}
	b.ReportAllocs()
	for b.Loop() {
		st.received(req)
		st.sent(out)
	}
}

// TestResult pins how a stream's end is classified.
func TestResult(t *testing.T) {
	srv, _ := newServer(t, testConfig)
	cases := []struct {
		name             string
		recvErr, sendErr error
		midBody          bool
		want             string
		wantCode         codes.Code
	}{
		{"envoy closed", nil, nil, false, resultOK, codes.OK},
		{"envoy reset after the last reply", status.Error(codes.Canceled, "x"), nil, false, resultOK, codes.OK},
		{"envoy reset mid-body", status.Error(codes.Canceled, "x"), nil, true, resultCancelled, codes.OK},
		{"immediate response", nil, errStreamDone, false, resultRejected, codes.OK},
		{"violation", status.Error(codes.FailedPrecondition, "x"), nil, false, resultProtocolError, codes.FailedPrecondition},
		{"broken", errors.New("x"), nil, false, resultFailed, codes.Internal},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			st := newStream(context.Background(), srv, nil)
			d := st.dirs[stage.Request]
			d.setMode(modeFullDuplex)
			d.sawHeaders = true
			d.counts.ended.Store(!tc.midBody)
			got, err := st.result(tc.recvErr, tc.sendErr)
			if got != tc.want || status.Code(err) != tc.wantCode {
				t.Errorf("result %s, %v; want %s, %v", got, err, tc.want, tc.wantCode)
			}
		})
	}
}

// TestRejectionCountedOnlyWhenSent: a pipeline that fails because Envoy already reset
// the stream sends no ImmediateResponse, so none is counted or logged as sent.
func TestRejectionCountedOnlyWhenSent(t *testing.T) {
	srv, _ := newServer(t, testConfig)
	ctx, cancel := context.WithCancelCause(context.Background())
	cancel(context.Canceled) // Envoy reset the stream
	st := newStream(ctx, srv, nil)
	err := st.fail(stageError{stage.Response, context.Canceled})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("fail returned %v, want the stream's cause", err)
	}
	if n := testutil.ToFloat64(srv.metrics.immediateResponses.WithLabelValues("502", "internal")); n != 0 || st.rejected != nil {
		t.Errorf("counted %v immediate responses, rejected %v; want none sent, none counted", n, st.rejected)
	}
}
