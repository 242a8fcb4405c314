package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"

	"github.com/bodystream/bodystream/stage"
)

// stageError is a failure of a direction's pipeline: the client is told with an
// ImmediateResponse, not a gRPC status.
type stageError struct {
	dir stage.Direction
	err error
}

func (e stageError) Error() string { return e.dir.String() + " body: " + e.err.Error() }
func (e stageError) Unwrap() error { return e.err }

// errOverloaded: the memory budget stayed spent for the whole admission wait.
var errOverloaded = errors.New("overloaded: memory budget spent")

// errNoResponseBudget: the response could not have the budget its transform needs.
// The upstream may have carried out the request by then, so the response passes
// through untouched instead of being refused (direction.passThrough).
var errNoResponseBudget = errors.New("memory budget spent: response passes through untouched")

// errReplyOverBudget: a BUFFERED body's output outgrew its reservation and the budget
// had no more.
var errReplyOverBudget = fmt.Errorf("BUFFERED output larger than its reservation: %w", errOverloaded)

// fail turns an error from a state machine into what Envoy sees. Protocol violations
// (gRPC status errors) end the stream with that status; pipeline failures answer the
// client with an ImmediateResponse and end the stream after it.
func (st *stream) fail(err error) error {
	var se stageError
	if !errors.As(err, &se) {
		return err // a protocol violation's gRPC status, or a stream error: ends the stream
	}
	code, reason, body := httpStatus(se)
	st.failed = true
	for _, d := range st.dirs {
		d.abort(err)
	}
	return st.enqueue(outgoing{final: true, resp: immediateResponse(code, body, st.srv.retryAfterSeconds()),
		rejection: &rejectionOutcome{status: int(code), reason: reason, err: err}})
}

// rejectionOutcome is what an ImmediateResponse answered. The send loop counts it
// once it went out: a stream that Envoy reset first (its pipelines then fail with
// the stream's context) sent none.
type rejectionOutcome struct {
	status int
	reason string
	err    error
}

// rejection is one reason a body is refused with an ImmediateResponse: the reason
// label of bodystream_immediate_responses_total, the status the client gets and the
// JSON error it reads.
type rejection struct {
	reason string
	is     func(error) bool
	status typev3.StatusCode
	text   string
	// upstreamFault: on the response path the upstream sent the bad body, so the
	// client gets a gateway error instead.
	upstreamFault bool
}

// statuses are the HTTP statuses the rejection can send.
func (r rejection) statuses() []typev3.StatusCode {
	if r.upstreamFault {
		return []typev3.StatusCode{r.status, typev3.StatusCode_BadGateway}
	}
	return []typev3.StatusCode{r.status}
}

func isErr(target error) func(error) bool {
	return func(err error) bool { return errors.Is(err, target) }
}

// rejectionReasons classify every pipeline failure, first match wins; the last
// matches anything. This table is the one place that decides status and reason.
var rejectionReasons = []rejection{
	{reason: "scan_rule", status: typev3.StatusCode_Forbidden, text: "content rejected by scan rule",
		is: func(err error) bool { var m *stage.ScanMatch; return errors.As(err, &m) }},
	{reason: "budget", is: isErr(errOverloaded), status: typev3.StatusCode_ServiceUnavailable, text: "overloaded, retry later"},
	{reason: "storage_full", is: isErr(stage.ErrStorageFull), status: typev3.StatusCode_InsufficientStorage, text: "storage full"},
	{reason: "bomb", is: isErr(stage.ErrDecompressionBomb), status: typev3.StatusCode_PayloadTooLarge, text: "body too large", upstreamFault: true},
	{reason: "limit", is: isErr(stage.ErrBodyTooLarge), status: typev3.StatusCode_PayloadTooLarge, text: "body too large", upstreamFault: true},
	{reason: "corrupt_input", is: isErr(stage.ErrCorruptInput), status: typev3.StatusCode_BadRequest, text: "corrupt body", upstreamFault: true},
	{reason: "unsupported_encoding", is: isErr(stage.ErrUnsupportedEncoding), status: typev3.StatusCode_UnsupportedMediaType, text: "unsupported content-encoding", upstreamFault: true},
	{reason: "streamed_trailers", is: isErr(errTrailersAfterStreamedTransform), status: typev3.StatusCode_InternalServerError, text: "body processing failed", upstreamFault: true},
	{reason: "invariant", is: isErr(errInvariant), status: typev3.StatusCode_InternalServerError, text: "body processing failed", upstreamFault: true},
	{reason: "internal", is: func(error) bool { return true }, status: typev3.StatusCode_InternalServerError, text: "body processing failed", upstreamFault: true},
}

// httpStatus maps a pipeline failure to the status, the reason and the JSON body the
// client gets.
func httpStatus(se stageError) (typev3.StatusCode, string, []byte) {
	reply := struct {
		Error     string `json:"error"`
		Direction string `json:"direction"`
		Rule      string `json:"rule,omitempty"`
		Detail    string `json:"detail"`
	}{Direction: se.dir.String(), Detail: se.err.Error()}
	var r rejection
	for _, r = range rejectionReasons {
		if r.is(se.err) {
			break
		}
	}
	code := r.status
	reply.Error = r.text
	if r.upstreamFault && se.dir == stage.Response {
		code, reply.Error = typev3.StatusCode_BadGateway, "upstream body could not be processed"
	}
	if match := (*stage.ScanMatch)(nil); errors.As(se.err, &match) {
		reply.Rule = match.Rule
	}
	body, _ := json.Marshal(reply)
	return code, r.reason, append(body, '\n')
}

func immediateResponse(code typev3.StatusCode, body []byte, retryAfter int) *extprocv3.ProcessingResponse {
	headers := headerMutation(stage.HeaderEdit{}, map[string]string{"content-type": "application/json"})
	if code == typev3.StatusCode_ServiceUnavailable {
		setHeader(headers, "retry-after", strconv.Itoa(retryAfter))
	}
	return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ImmediateResponse{
		ImmediateResponse: &extprocv3.ImmediateResponse{
			Status:  &typev3.HttpStatus{Code: code},
			Headers: headers,
			Body:    body,
			Details: "bodystream_" + code.String(),
		},
	}}
}
