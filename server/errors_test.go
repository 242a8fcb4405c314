package server

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/bodystream/bodystream/stages"
)

// TestHTTPStatus pins the table in the README: which status each failure gets on
// each path.
func TestHTTPStatus(t *testing.T) {
	wrap := func(err error) error { return fmt.Errorf("stage x: %w", err) }
	cases := []struct {
		name     string
		err      error
		request  int
		response int
	}{
		{"scan match", wrap(&stages.ScanMatch{Rule: "eicar", Offset: 9}), 403, 403},
		{"too large", wrap(stages.ErrBodyTooLarge), 413, 502},
		{"corrupt", wrap(stages.ErrCorruptInput), 400, 502},
		{"unsupported encoding", wrap(stages.ErrUnsupportedEncoding), 415, 502},
		{"storage full", wrap(stages.ErrStorageFull), 507, 507},
		{"overloaded", errOverloaded, 503, 503},
		{"trailers after streamed transform", errTrailersAfterStreamedTransform, 500, 502},
		{"anything else", fmt.Errorf("boom"), 500, 502},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for dir, want := range map[stages.Direction]int{stages.Request: tc.request, stages.Response: tc.response} {
				code, body := httpStatus(stageError{dir, tc.err})
				if int(code) != want {
					t.Errorf("%s: status %d, want %d", dir, code, want)
				}
				var reply map[string]string
				if err := json.Unmarshal(body, &reply); err != nil || reply["error"] == "" || reply["direction"] != dir.String() {
					t.Errorf("%s: body %s is not the documented JSON", dir, body)
				}
			}
		})
	}
	_, body := httpStatus(stageError{stages.Request, wrap(&stages.ScanMatch{Rule: "eicar"})})
	var reply map[string]string
	json.Unmarshal(body, &reply)
	if reply["rule"] != "eicar" {
		t.Errorf("scan reply names rule %q, want eicar", reply["rule"])
	}
}
