package server

import (
	"os"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestClientGoneMidBody: when Envoy resets the stream mid-body (the client hung up),
// every stage ends, the partial file is removed, the budget is returned, and no
// goroutine is left (goleak in TestMain).
func TestClientGoneMidBody(t *testing.T) {
	dir := t.TempDir()
	ts := newTestServer(t, `
memory: {budget: 64MiB}
pipelines:
  archived:
    - {gzip: {level: 1, preview_bytes: 0}}
    - {file: {dir: `+dir+`}}
routes:
  - {name: archive, request: archived, response: identity}
`)
	for _, mode := range []modes{fullDuplex, {modeStreamed, modeStreamed}} {
		t.Run(modeName(mode.request), func(t *testing.T) {
			e := ts.open("archive")
			e.send(e.withConfig(requestHeaders(false, ":path", "/up", "x-request-id", "gone"), mode))
			e.recv() // headers response: the pipeline runs
			e.send(requestBody(text(100<<10), false))
			if mode.request == modeStreamed {
				e.recv()
			}
			if entries, _ := os.ReadDir(dir); len(entries) == 0 {
				t.Fatal("no partial file while the body streams: the test would prove nothing")
			}
			e.cancel() // Envoy resets the stream

			// The server learns of the reset on its own goroutines: wait, bounded, for
			// the stream to be gone.
			for deadline := time.Now().Add(5 * time.Second); testutil.ToFloat64(ts.srv.metrics.streamsActive) != 0; {
				if time.Now().After(deadline) {
					t.Fatal("stream still active 5s after the reset")
				}
				time.Sleep(time.Millisecond)
			}
			if entries, _ := os.ReadDir(dir); len(entries) != 0 {
				t.Fatalf("left behind: %v", entries)
			}
			if inUse := testutil.ToFloat64(ts.srv.metrics.budgetInUse); inUse != 0 {
				t.Fatalf("budget still holds %v bytes", inUse)
			}
		})
	}
}
