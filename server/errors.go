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
	code, body := httpStatus(se)
	st.srv.log.Info("body rejected", "request_id", st.requestID, "status", int(code), "err", err)
	st.srv.metrics.rejections.WithLabelValues(strconv.Itoa(int(code))).Inc()
	st.failed = true
	for _, d := range st.dirs {
		d.abort(err)
	}
	return st.enqueue(outgoing{final: true, resp: immediateResponse(code, body, st.srv.retryAfterSeconds())})
}

// httpStatus maps a pipeline failure to the status and JSON body the client gets. On
// the response path the upstream sent the bad body, so the client sees a gateway error.
func httpStatus(se stageError) (typev3.StatusCode, []byte) {
	reply := struct {
		Error     string `json:"error"`
		Direction string `json:"direction"`
		Rule      string `json:"rule,omitempty"`
		Detail    string `json:"detail"`
	}{Direction: se.dir.String(), Detail: se.err.Error()}
	var match *stage.ScanMatch
	var code typev3.StatusCode
	switch {
	case errors.As(se.err, &match):
		code, reply.Error, reply.Rule = typev3.StatusCode_Forbidden, "content rejected by scan rule", match.Rule
	case errors.Is(se.err, errOverloaded):
		code, reply.Error = typev3.StatusCode_ServiceUnavailable, "overloaded, retry later"
	case errors.Is(se.err, stage.ErrStorageFull):
		code, reply.Error = typev3.StatusCode_InsufficientStorage, "storage full"
	case se.dir == stage.Response:
		code, reply.Error = typev3.StatusCode_BadGateway, "upstream body could not be processed"
	case errors.Is(se.err, stage.ErrBodyTooLarge):
		code, reply.Error = typev3.StatusCode_PayloadTooLarge, "body too large"
	case errors.Is(se.err, stage.ErrCorruptInput):
		code, reply.Error = typev3.StatusCode_BadRequest, "corrupt body"
	case errors.Is(se.err, stage.ErrUnsupportedEncoding):
		code, reply.Error = typev3.StatusCode_UnsupportedMediaType, "unsupported content-encoding"
	default:
		code, reply.Error = typev3.StatusCode_InternalServerError, "body processing failed"
	}
	body, _ := json.Marshal(reply)
	return code, append(body, '\n')
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
