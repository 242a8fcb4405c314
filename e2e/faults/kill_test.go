package faults

import (
	"context"
	"net/http"
	"sync"
	"testing"

	"github.com/bodystream/bodystream/internal/harness"
)

// TestBodystreamKilled: bodystream is SIGKILLed while six uploads (three body modes,
// h1 and h2) are in flight. Each client gets an error (a failure status or a broken
// response), never a 200 whose body is short or wrong, and the upstream never gets a
// body that ends cleanly but is not the upload. Restarted on the same address,
// bodystream serves again: Envoy reconnects, and the next upload of every mode is
// byte-exact.
//
// An HTTP/1.1 client whose response had started and who is still sending learns of
// the failure only when Envoy closes the connection, after delayed_close_timeout (30 s
// in resources/envoy.yaml, for slow readers); the test's Envoy waits 1 s.
func TestBodystreamKilled(t *testing.T) {
	s := startStack(t, stackOptions{envoyEdits: map[string]string{"delayed_close_timeout: 30s": "delayed_close_timeout: 1s"}})
	const size, pauseAt = 2 << 20, 256 << 10
	type flight struct {
		route string
		proto harness.Protocol
		id    string
		body  *harness.Body
		res   harness.Result
		err   error
	}
	var flights []*flight
	gate := make(chan struct{})
	var wg sync.WaitGroup
	for _, route := range []string{"streamed", "buffered", "full-duplex-streamed"} {
		for _, proto := range protocols {
			body, err := harness.NewBody(harness.BodyRandom, size, uint64(len(flights)), "")
			if err != nil {
				t.Fatal(err)
			}
			f := &flight{route: route, proto: proto, id: newRequestID(t), body: body}
			flights = append(flights, f)
			wg.Go(func() {
				gated := newGatedBody(t.Context(), body, pauseAt, gate)
				f.res, f.err = harness.Upload(t.Context(), s.transports[proto], harness.Request{URL: s.URL + "/" + route + "/echo",
					Body: gated, Length: size, Header: http.Header{"Content-Type": {"video/mp4"}, "X-Request-Id": {f.id}}})
			})
		}
	}
	s.waitGauge(t, streamsActive, "every upload's stream open", func(v float64) bool { return v >= float64(len(flights)) })
	if err := s.Kill("bodystream"); err != nil {
		t.Fatal(err)
	}
	close(gate)
	wg.Wait()
	for _, f := range flights {
		switch {
		case f.err != nil:
			t.Logf("%s over %s: failed as it should: %v (status %d)", f.route, f.proto, f.err, f.res.Status)
		case f.res.Status != http.StatusOK:
			t.Logf("%s over %s: failed as it should: status %d %q", f.route, f.proto, f.res.Status, f.res.Head)
		default:
			// A 200 read to a clean end must be the whole upload, though bodystream died.
			if err := f.res.Verify(f.body.Sent()); err != nil {
				t.Errorf("%s over %s: a 200 that ended cleanly is not the upload: %v", f.route, f.proto, err)
			}
		}
		_, sum := f.body.Sent()
		s.checkNoCleanTruncation(t, f.id, sum)
	}

	if err := s.Restart(context.Background(), "bodystream"); err != nil {
		t.Fatal(err)
	}
	for _, route := range []string{"streamed", "buffered", "full-duplex-streamed", "scan", "archive"} {
		for _, proto := range protocols {
			s.exact(t, "/"+route+"/echo", proto, 512<<10)
		}
	}
	// The new process has its own baseline.
	s.baseGoroutines = s.settle(t)[goroutines]
	s.checkNoLeak(t)
}
