package server

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/bodystream/bodystream/stage"
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
		reason   string
	}{
		{"scan match", wrap(&stage.ScanMatch{Rule: "eicar", Offset: 9}), 403, 403, "scan_rule"},
		{"too large", wrap(stage.ErrBodyTooLarge), 413, 502, "limit"},
		{"decompression bomb", wrap(stage.ErrDecompressionBomb), 413, 502, "bomb"},
		{"corrupt", wrap(stage.ErrCorruptInput), 400, 502, "corrupt_input"},
		{"unsupported encoding", wrap(stage.ErrUnsupportedEncoding), 415, 502, "unsupported_encoding"},
		{"storage full", wrap(stage.ErrStorageFull), 507, 507, "storage_full"},
		{"overloaded", errOverloaded, 503, 503, "budget"},
		{"trailers after streamed transform", errTrailersAfterStreamedTransform, 500, 502, "streamed_trailers"},
		{"invariant", fmt.Errorf("%w: x", errInvariant), 500, 502, "invariant"},
		{"anything else", fmt.Errorf("boom"), 500, 502, "internal"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for dir, want := range map[stage.Direction]int{stage.Request: tc.request, stage.Response: tc.response} {
				code, reason, body := httpStatus(stageError{dir, tc.err})
				if reason != tc.reason {
					t.Errorf("%s: reason %q, want %q", dir, reason, tc.reason)
				}
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
	_, _, body := httpStatus(stageError{stage.Request, wrap(&stage.ScanMatch{Rule: "eicar"})})
	var reply map[string]string
	json.Unmarshal(body, &reply)
	if reply["rule"] != "eicar" {
		t.Errorf("scan reply names rule %q, want eicar", reply["rule"])
	}
}
