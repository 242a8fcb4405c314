package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bodystream/bodystream/internal/harness"
)

// UploadResult is one upload, as the JSON report holds it.
type UploadResult struct {
	Index int `json:"index"`
	// Start is when the request began, in seconds on the scenario's sampling clock;
	// Seconds is how long until the response was read and verified.
	Start    float64 `json:"start"`
	Seconds  float64 `json:"seconds"`
	Sent     int64   `json:"sent"`
	Status   int     `json:"status"`
	Encoding string  `json:"encoding,omitempty"`
	// Wire is the response body's size as received, before undoing its encoding:
	// with the echo upstream, what the upstream got.
	Wire int64  `json:"wire"`
	Err  string `json:"error,omitempty"`
	// Refused says bodystream turned the upload away for lack of memory budget: 503
	// with retry-after (kept in RetryAfter), which is an outcome, not an error,
	// provided the upstream never saw the request (checked against Envoy's counter
	// of requests to the echo, see refusalsLeaked).
	Refused    bool   `json:"refused,omitempty"`
	RetryAfter string `json:"retry_after,omitempty"`
}

// dialTimeout bounds one upload's connect. Hundreds of uploads start at once on a
// machine whose CPUs generate and hash their bodies: with the harness's 5 s, 41 of 200
// connects (accepted by the kernel at once) timed out before the client's goroutine
// ran again. The load's own timeout still bounds the whole.
const dialTimeout = 2 * time.Minute

// load fires a scenario's uploads at Envoy and verifies every response.
type load struct {
	url      string // Envoy's listener + route + "/echo"
	scenario Scenario
	file     string
	clock    func(time.Time) float64 // the sampler's clock

	// Progress, for the progress line.
	sent, received, done, failed atomic.Int64
}

// run starts every upload at once and returns when all have ended.
func (l *load) run(ctx context.Context) []UploadResult {
	results := make([]UploadResult, l.scenario.Concurrency)
	var wg sync.WaitGroup
	for i := range results {
		wg.Go(func() {
			results[i] = l.upload(ctx, i)
			if results[i].Err != "" {
				l.failed.Add(1)
			}
			l.done.Add(1)
		})
	}
	wg.Wait()
	return results
}

// upload sends one body on a connection of its own, as ten curl processes would, and
// checks that what comes back is what went out.
func (l *load) upload(ctx context.Context, index int) UploadResult {
	start := time.Now()
	r := UploadResult{Index: index, Start: l.clock(start)}
	err := l.send(ctx, index, &r)
	r.Seconds = time.Since(start).Seconds()
	if err != nil {
		r.Err = err.Error()
	}
	return r
}

func (l *load) send(ctx context.Context, index int, r *UploadResult) error {
	sc := l.scenario
	// Upload i gets seed i+1: bodies differ between concurrent uploads, so that a
	// response delivered to the wrong request is caught.
	b, err := harness.NewBody(sc.Body, sc.Size, uint64(index+1), l.file)
	if err != nil {
		return err
	}
	b.Progress = &l.sent
	transport := harness.NewTransport(sc.Protocol)
	transport.DialContext = (&net.Dialer{Timeout: dialTimeout}).DialContext
	defer transport.CloseIdleConnections()
	got, err := harness.Upload(ctx, transport, harness.Request{URL: l.url, Body: b, Length: sc.Size,
		Header: http.Header{"Content-Type": {b.ContentType()}}, Progress: &l.received})
	r.Status = got.Status
	r.Sent, _ = b.Sent()
	switch {
	case got.Status == 0:
		return err
	case got.Status == http.StatusServiceUnavailable && got.Header.Get("Retry-After") != "":
		// A clean refusal ends the upload; any other 503 is a failure.
		r.Refused, r.RetryAfter = true, got.Header.Get("Retry-After")
		return nil
	case got.Status != http.StatusOK:
		return fmt.Errorf("status %d %s: %s", got.Status, http.StatusText(got.Status), strings.TrimSpace(string(got.Head)))
	case got.ProtoMajor != map[harness.Protocol]int{harness.H1: 1, harness.H2: 2}[sc.Protocol]:
		return fmt.Errorf("asked for %s, Envoy answered in HTTP/%d", sc.Protocol, got.ProtoMajor)
	}
	r.Encoding, r.Wire = got.Encoding, got.Wire
	if err != nil {
		return err
	}
	if err := got.Verify(b.Sent()); err != nil {
		return err
	}
	if want, strict := sc.wantEncoding(); strict && got.Encoding != want {
		// The bytes are right, but the route did not do what the scenario measures.
		return fmt.Errorf("response content-encoding %q, the scenario expects %q", got.Encoding, want)
	}
	return nil
}

// errorSummary returns the distinct errors of results, most frequent first, each with
// its count, at most n of them.
func errorSummary(results []UploadResult, n int) []string {
	counts := map[string]int{}
	var order []string
	for _, r := range results {
		if r.Err == "" {
			continue
		}
		if counts[r.Err] == 0 {
			order = append(order, r.Err)
		}
		counts[r.Err]++
	}
	var out []string
	for _, e := range order {
		if len(out) == n {
			break
		}
		out = append(out, fmt.Sprintf("%d× %s", counts[e], e))
	}
	return out
}

var errInterrupted = errors.New("interrupted")
