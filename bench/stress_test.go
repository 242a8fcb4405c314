package bench

import (
	"context"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bodystream/bodystream/internal/harness"
)

// stressCase is one upload and the three lines the stack wrote about it; each field
// is what a healthy 1000-byte identity upload on /fds/identity would log, unless the
// case changes it.
type stressCase struct {
	rx, tx                 int64 // Envoy's access log
	reqIn, reqOut, respOut int64 // bodystream's stream line
	upIn, upOut            int64 // the echo's line
	upSum                  string
	upEnd                  string
	invariant              bool
	clientWire             int64
}

func healthy() stressCase {
	return stressCase{rx: 1000, tx: 1000, reqIn: 1000, reqOut: 1000, respOut: 1000, upIn: 1000, upOut: 1000,
		upSum: hex.EncodeToString(sum1000[:]), upEnd: "eof", clientWire: 1000}
}

var sum1000 = [32]byte{1, 2, 3}

func (c stressCase) write(t *testing.T) (stressUpload, *stressLogs) {
	dir := t.TempDir()
	id := "stress-1-7"
	envoy := fmt.Sprintf(`[warning] something else
{"access_log":"stress","request_id":%q,"code":200,"flags":"-","rx":%d,"tx":%d}`, id, c.rx, c.tx)
	bodystream := fmt.Sprintf(`time=x level=DEBUG msg="ext_proc stream ended" request_id=%s request.mode=FULL_DUPLEX_STREAMED request.in=%d request.out=%d request.complete=true request.ended=true request.identity=true request.pipeline_in=%d request.pipeline_out=%d response.mode=FULL_DUPLEX_STREAMED response.in=%d response.out=%d response.identity=true response.pipeline_in=%d response.pipeline_out=%d`,
		id, c.reqIn, c.reqOut, c.reqIn, c.reqOut, c.upOut, c.respOut, c.upOut, c.respOut)
	if c.invariant {
		bodystream += fmt.Sprintf("\ntime=x level=ERROR msg=\"invariant violated\" request_id=%s direction=request invariant=output_accounting err=\"pipeline wrote 1000 bytes, chunker took 1000 and emitted 900\"", id)
	}
	echo := fmt.Sprintf(`time=x level=INFO msg=request method=POST path=/fds/identity/echo status=200 bytes_in=%d bytes_out=%d request_id=%s content_encoding="" body_end=%s sha256=%s`,
		c.upIn, c.upOut, id, c.upEnd, c.upSum)
	paths := map[string]string{"envoy.log": envoy, "bodystream.log": bodystream, "echo.log": echo}
	for name, text := range paths {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	logs, err := readStressLogs(filepath.Join(dir, "envoy.log"), filepath.Join(dir, "bodystream.log"), filepath.Join(dir, "echo.log"))
	if err != nil {
		t.Fatal(err)
	}
	u := stressUpload{
		Plan:    stressPlan{ID: id, Mode: "fds", Codec: "identity", Size: 1000},
		Outcome: outcomeOK, Status: 200, Sent: 1000, Wire: c.clientWire, Decoded: c.clientWire, WireEnd: "eof",
		sum: sum1000[:],
	}
	return u, logs
}

// TestStressFindsAndLocatesLoss: each case loses bytes at one hop; the check must call
// the upload bad (or not) and the forensics must name that hop.
func TestStressFindsAndLocatesLoss(t *testing.T) {
	tests := []struct {
		name      string
		change    func(*stressCase)
		bad       bool
		wantWhere string
	}{
		{"healthy", func(*stressCase) {}, false, ""},
		{"upstream body ended with an error", func(c *stressCase) { c.upIn, c.upEnd = 500, `"stream reset"` }, false, ""},
		{"client→Envoy", func(c *stressCase) { c.rx, c.reqIn, c.reqOut, c.upIn, c.upSum = 900, 900, 900, 900, "00" }, true, "client→Envoy: the client sent 1000 bytes, Envoy received 900"},
		{"Envoy→bodystream", func(c *stressCase) { c.reqIn, c.reqOut, c.upIn, c.upSum = 900, 900, 900, "00" }, true, "Envoy→bodystream: Envoy received 1000 request bytes, bodystream got 900"},
		{"Envoy→upstream", func(c *stressCase) { c.upIn, c.upSum = 900, "00" }, true, "Envoy→upstream: bodystream sent 1000 request bytes (body ended: true), the upstream received 900"},
		{"same counts, other content", func(c *stressCase) { c.upSum = "00" }, true, "inside the request pipeline"},
		{"invariant", func(c *stressCase) { c.invariant = true; c.upIn, c.upSum = 900, "00" }, true, "inside bodystream, request body: invariant output_accounting"},
		{"Envoy→client", func(c *stressCase) { c.clientWire = 900 }, false, "Envoy→client: Envoy sent 1000 response bytes, the client read 900"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := healthy()
			tt.change(&c)
			u, logs := c.write(t)
			checkUpstream(&u, logs)
			if (u.Outcome == outcomeBad) != tt.bad {
				t.Fatalf("outcome %s (%s), want bad=%v", u.Outcome, u.Err, tt.bad)
			}
			if tt.wantWhere == "" {
				return
			}
			if where := locate(u, logs); !strings.Contains(where, tt.wantWhere) {
				t.Errorf("locate: %q, want %q", where, tt.wantWhere)
			}
			if f := forensics(u, logs); !strings.Contains(f, `"access_log":"stress"`) || !strings.Contains(f, "ext_proc stream ended") || !strings.Contains(f, "body_end=") {
				t.Errorf("forensics lacks a process's line:\n%s", f)
			}
		})
	}
}

func TestStressProblems(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{
		"envoy.log":      "all well\n",
		"bodystream.log": "WARNING: DATA RACE\nRead at 0x00c by goroutine 7:\n",
		"echo.log":       "panic: runtime error\n",
	}
	for name, text := range files {
		os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644)
	}
	logs, err := readStressLogs(filepath.Join(dir, "envoy.log"), filepath.Join(dir, "bodystream.log"), filepath.Join(dir, "echo.log"))
	if err != nil {
		t.Fatal(err)
	}
	if len(logs.problems) != 2 {
		t.Errorf("problems %q, want the race and the panic", logs.problems)
	}
}

// TestStressSmoke runs the stress target briefly through the real stack, without the
// race build or busy loops: it keeps `make stress` working, and every upload it makes
// must come back whole or fail cleanly.
func TestStressSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Envoy")
	}
	harness.RequireEnvoy(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	report, err := Stress(ctx, StressOptions{Duration: 10 * time.Second, Workers: 4, Busy: 0, MaxSize: 4 << 20, Seed: 7, Out: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Log(report.Summary())
	if report.Failed() {
		t.Fatalf("stress failed:\n%s", report.Summary())
	}
	if report.Outcomes[outcomeOK] == 0 {
		t.Errorf("no upload succeeded:\n%s", report.Summary())
	}
	// Every successful upload also reached the upstream whole.
	for _, u := range report.Details {
		if u.Outcome == outcomeOK && u.Upstream != "complete" {
			t.Errorf("%s came back whole, but the upstream's view is %q", u.Plan.ID, u.Upstream)
		}
	}
}
