package harness

import (
	"fmt"
	"testing"
)

func TestParseLogfmt(t *testing.T) {
	line := `time=2026-11-29T07:51:09.912Z level=DEBUG msg="ext_proc stream ended" request_id=r-1 request.in=16383 err="a \"quoted\" word" empty=""`
	got := ParseLogfmt(line)
	want := map[string]string{"time": "2026-11-29T07:51:09.912Z", "level": "DEBUG", "msg": "ext_proc stream ended",
		"request_id": "r-1", "request.in": "16383", "err": `a "quoted" word`, "empty": ""}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("ParseLogfmt:\n got %v\nwant %v", got, want)
	}
}
