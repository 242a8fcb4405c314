package faults

import (
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/bodystream/bodystream/internal/harness"
)

// TestDrainDuringUploads: SIGTERM reaches bodystream while sixteen uploads are in
// flight (four routes, h1 and h2, half of them about to finish, half stalled by their
// clients). README "Operating bodystream", Signals and drain timing: new streams are
// refused at once (the harness runs -drain-delay 0s), streams in flight go on, and at
// drain_timeout (10 s here) the rest are cut. So every upload that finishes is
// byte-exact and archived whole; every cut one fails where its client sees it (a 500
// or a reset, never a clean 200), reaches the upstream without a clean end, and
// leaves no file; bodystream exits 0. TestE2EDrain (e2e/operate_test.go) checks the
// drain's timing, health checks and log lines; this test checks every body mode's
// outcome.
func TestDrainDuringUploads(t *testing.T) {
	// The drain timeout leaves the finishing uploads time on a busy machine.
	s := startStack(t, stackOptions{bodystream: []string{"-drain-timeout", "10s"},
		// HTTP/1.1 clients of cut streams learn of it when Envoy closes (TestBodystreamKilled).
		envoyEdits: map[string]string{"delayed_close_timeout: 30s": "delayed_close_timeout: 1s"}})
	// Four archive uploads at a time fit the archive's 1 MiB cap.
	const size, pauseAt = 256 << 10, 64 << 10
	type flight struct {
		route    string
		proto    harness.Protocol
		finishes bool
		id       string
		body     *harness.Body
		res      harness.Result
		err      error
	}
	var flights []*flight
	finish := make(chan struct{})
	var wg sync.WaitGroup
	for _, route := range []string{"streamed", "buffered", "full-duplex-streamed", "archive"} {
		for _, proto := range protocols {
			for _, finishes := range []bool{true, false} {
				body, err := harness.NewBody(harness.BodyRandom, size, uint64(len(flights)), "")
				if err != nil {
					t.Fatal(err)
				}
				f := &flight{route: route, proto: proto, finishes: finishes, id: newRequestID(t), body: body}
				flights = append(flights, f)
				var gate <-chan struct{} // a stalled client's gate never opens
				if finishes {
					gate = finish
				}
				wg.Go(func() {
					gated := newGatedBody(t.Context(), body, pauseAt, gate)
					f.res, f.err = harness.Upload(t.Context(), s.transports[proto], harness.Request{URL: s.URL + "/" + route + "/echo",
						Body: gated, Length: size, Header: http.Header{"Content-Type": {"video/mp4"}, "X-Request-Id": {f.id}}})
				})
			}
		}
	}
	s.waitGauge(t, streamsActive, "every upload's stream open", func(v float64) bool { return v >= float64(len(flights)) })
	bodystream := s.Process("bodystream")
	if err := s.Signal("bodystream", syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	close(finish)

	// A new upload once the drain began is refused, never served by half.
	late := newRequestID(t)
	body, res, err := s.upload(t.Context(), t, "/full-duplex-streamed/echo", harness.H2, harness.BodyRandom, 64<<10, http.Header{"X-Request-Id": {late}})
	t.Logf("upload after SIGTERM: status %d %q, %v", res.Status, res.Head, err)
	// The signal is handled while the upload starts: one that reaches bodystream
	// before the drain is served whole, and only then may the upstream have it.
	lateLen, lateSum := body.Sent()
	if err == nil && res.Status == http.StatusOK {
		if verr := res.Verify(lateLen, lateSum); verr != nil {
			t.Errorf("upload after SIGTERM: a 200 that is not the upload: %v", verr)
		}
	}
	s.checkNoCleanTruncation(t, late, lateSum)

	wg.Wait()
	for _, f := range flights {
		name := f.route + " over " + string(f.proto)
		n, sum := f.body.Sent()
		if f.finishes {
			if f.err != nil || f.res.Status != http.StatusOK {
				t.Errorf("%s, finishing inside the drain: status %d, %v; want a 200", name, f.res.Status, f.err)
			} else if err := f.res.Verify(n, sum); err != nil {
				t.Errorf("%s, finishing inside the drain: %v", name, err)
			}
			s.checkArchived(t, f.id, n, sum, f.route == "archive")
		} else {
			t.Logf("%s, cut by the drain timeout: status %d, %v", name, f.res.Status, f.err)
			if f.err == nil && f.res.Status == http.StatusOK {
				t.Errorf("%s, cut by the drain timeout: a 200 that ended cleanly with %d bytes: TRUNCATED", name, f.res.Decoded)
			}
			s.checkArchived(t, f.id, n, sum, false)
		}
		s.checkNoCleanTruncation(t, f.id, sum)
	}

	select {
	case <-bodystream.Done():
		if err := bodystream.Err(); err != nil {
			t.Errorf("bodystream exited with %v after the drain, want 0", err)
		}
	case <-time.After(settleTimeout):
		t.Fatalf("bodystream still running %s after its drain timeout", settleTimeout)
	}
	var log strings.Builder
	harness.ScanLines(bodystream.LogPath, func(line string) { log.WriteString(line + "\n") })
	if !strings.Contains(log.String(), "open_streams=0") {
		t.Errorf("bodystream's log does not end with no stream open:\n%s", log.String())
	}
	s.checkDiskAndLogs(t)
}
