package server

import (
	"bytes"
	"testing"

	filterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"

	"github.com/bodystream/bodystream/stage"
)

// TestNoReceivedBodyIsReadAfterItsMessage runs bodies through every body mode, both
// directions, identity and gzip, with the preview held over many messages, on a server
// whose pool poisons every buffer put back (newTestServer). A received body is a view
// into its receive buffer, which goes back to the pool once its message is handled; a
// mode that kept the view and read it later would send poison, and the output would
// not be byte-exact.
func TestNoReceivedBodyIsReadAfterItsMessage(t *testing.T) {
	ts := newTestServer(t, testConfig)
	body := text(100 << 10)
	cases := []struct {
		name  string
		mode  filterv3.ProcessingMode_BodySendMode
		dir   stage.Direction
		route string
		chunk int
		eos   bool // BUFFERED_PARTIAL: false sends only a prefix
	}{
		{"STREAMED request identity", modeStreamed, stage.Request, "identity", 16 << 10, true},
		{"STREAMED request gzip", modeStreamed, stage.Request, "gzip", 16 << 10, true},
		{"STREAMED response gzip", modeStreamed, stage.Response, "gzip", 5000, true},
		{"BUFFERED request identity", modeBuffered, stage.Request, "identity", len(body), true},
		{"BUFFERED request gzip", modeBuffered, stage.Request, "gzip", len(body), true},
		{"BUFFERED response gzip", modeBuffered, stage.Response, "gzip", len(body), true},
		{"BUFFERED_PARTIAL prefix passes untouched", modePartial, stage.Request, "gzip", len(body), false},
		{"FULL_DUPLEX request identity", modeFullDuplex, stage.Request, "identity", 16 << 10, true},
		{"FULL_DUPLEX request gzip", modeFullDuplex, stage.Request, "gzip", 7 << 10, true},
		// Frames of 1 KiB or less are not pooled (grpc-go allocates them), so a chunk
		// larger than that, and several of them under the 8 KiB preview.
		{"FULL_DUPLEX preview held over many messages", modeFullDuplex, stage.Request, "gzip-preview", 2000, true},
		{"FULL_DUPLEX response gzip", modeFullDuplex, stage.Response, "gzip", 3000, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			poisoned := ts.pool.poisoned.Load()
			e := ts.open(tc.route)
			m := modes{modeNone, tc.mode}
			if tc.dir == stage.Request {
				m = modes{tc.mode, modeNone}
			}
			bodyMsg := requestBody
			if tc.dir == stage.Response {
				bodyMsg = responseBody
				e.send(e.withConfig(requestHeaders(true, ":path", "/down"), m))
				e.recv()
				e.send(responseHeaders(false, ":status", "200", "content-type", "application/json"))
			} else {
				e.send(e.withConfig(requestHeaders(false, ":path", "/up", "content-type", "application/json"), m))
			}
			chunks := split(body, tc.chunk)
			var out bytes.Buffer
			gzipped := false
			if tc.mode == modeFullDuplex {
				for i, c := range chunks {
					e.send(bodyMsg(c, i == len(chunks)-1))
				}
				enc, _ := setValue(mutationOf(e.recv()), "content-encoding")
				gzipped = enc == "gzip"
				out.Write(e.streamedBodies(4 << 10))
			} else {
				enc, _ := setValue(mutationOf(e.recv()), "content-encoding")
				gzipped = enc == "gzip"
				for i, c := range chunks {
					e.send(bodyMsg(c, tc.eos && i == len(chunks)-1))
					resp := e.recv()
					br := resp.GetRequestBody()
					if tc.dir == stage.Response {
						br = resp.GetResponseBody()
					}
					if br == nil {
						t.Fatalf("want a body response, got %v", resp)
					}
					if mutation := br.GetResponse().GetBodyMutation(); mutation != nil {
						out.Write(mutation.GetBody())
						enc, _ := setValue(br.GetResponse().GetHeaderMutation(), "content-encoding")
						gzipped = gzipped || enc == "gzip"
					} else {
						out.Write(c) // Envoy's copy goes on
					}
				}
			}
			got := out.Bytes()
			if gzipped {
				got = gunzip(t, got)
			}
			if !bytes.Equal(got, body) {
				t.Fatalf("body differs (gzip %v): %d bytes, want %d", gzipped, len(got), len(body))
			}
			wantGzip := tc.route != "identity" && tc.eos
			if gzipped != wantGzip {
				t.Errorf("gzipped %v, want %v", gzipped, wantGzip)
			}
			if ts.pool.poisoned.Load() == poisoned {
				t.Fatal("no buffer was poisoned while the body went through: this case checks nothing")
			}
		})
	}
}
