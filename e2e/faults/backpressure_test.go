package faults

import (
	"context"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dustin/go-humanize"

	"github.com/bodystream/bodystream/internal/harness"
)

// Backpressure bounds. Between the client's writes and the echo's reads sit Envoy's
// 64 KiB buffers and windows, bodystream's 256 KiB window and pipeline, and the
// kernel's loopback socket buffers, which grow to a few MiB each; an upload that did
// not wait for its reader would be hundreds of MiB ahead within the sampling time.
const (
	maxInFlight  = 32 << 20
	maxRSSGrowth = 64 << 20
	// slowRate is how fast the echo reads: 256 KiB a second.
	slowRate = 256 << 10
)

// TestUpstreamReadsSlowly: an upstream reading 256 KiB a second holds a 1 GiB upload
// back all the way to the client: what the client has sent stays within a few MiB of
// what came back through the echo, and bodystream's and Envoy's RSS stay within a
// bound of where they started, while the upload waits on it.
func TestUpstreamReadsSlowly(t *testing.T) {
	s := startStack(t, stackOptions{})
	procs := []*harness.Process{s.Process("bodystream"), s.Process("envoy")}
	base := make([]int64, len(procs))
	for i, p := range procs {
		rss, err := p.RSS()
		if err != nil {
			t.Fatal(err)
		}
		base[i] = rss
	}
	for _, route := range []string{"full-duplex-streamed", "streamed"} {
		for _, proto := range protocols {
			t.Run(route+"/"+string(proto), func(t *testing.T) {
				ctx, hangUp := context.WithCancel(t.Context())
				defer hangUp()
				const size = 1 << 30
				body, err := harness.NewBody(harness.BodyRandom, size, 2, "")
				if err != nil {
					t.Fatal(err)
				}
				var sent, received atomic.Int64
				body.Progress = &sent
				done := make(chan struct{})
				go func() {
					defer close(done)
					// Video passes the gzip route untouched, so that bytes back are bytes read.
					harness.Upload(ctx, s.transports[proto], harness.Request{URL: s.URL + "/" + route + "/slow?rate=" + itoa(slowRate),
						Body: body, Length: size, Header: http.Header{"Content-Type": {"video/mp4"}}, Progress: &received})
				}()
				var maxAhead int64
				peak := make([]int64, len(procs))
				// Sampling over two seconds of the upload is the point: each sample is
				// checked against bounds, none against the time it took.
				for range 8 {
					time.Sleep(250 * time.Millisecond)
					maxAhead = max(maxAhead, sent.Load()-received.Load())
					for i, p := range procs {
						rss, err := p.RSS()
						if err != nil {
							t.Fatal(err)
						}
						peak[i] = max(peak[i], rss)
					}
				}
				t.Logf("sent %s, back %s, at most %s ahead; peak RSS bodystream %s, envoy %s (started at %s, %s)",
					humanize.IBytes(uint64(sent.Load())), humanize.IBytes(uint64(received.Load())), humanize.IBytes(uint64(maxAhead)),
					humanize.IBytes(uint64(peak[0])), humanize.IBytes(uint64(peak[1])), humanize.IBytes(uint64(base[0])), humanize.IBytes(uint64(base[1])))
				if received.Load() == 0 {
					t.Error("nothing came back through the slow upstream: the upload did not move")
				}
				if maxAhead > maxInFlight {
					t.Errorf("the client got %s ahead of the upstream's reads: no backpressure (bound %s)", humanize.IBytes(uint64(maxAhead)), humanize.IBytes(maxInFlight))
				}
				for i, p := range procs {
					if peak[i]-base[i] > maxRSSGrowth {
						t.Errorf("%s RSS grew from %s to %s while the upload waited (bound +%s)", p.Name,
							humanize.IBytes(uint64(base[i])), humanize.IBytes(uint64(peak[i])), humanize.IBytes(maxRSSGrowth))
					}
				}
				hangUp()
				<-done
			})
		}
	}
	s.checkNoLeak(t)
}
