package e2e

import (
	"bufio"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bodystream/bodystream/internal/harness"
)

// budgetConfig: a budget for about two exchanges on /full-duplex-streamed, whose
// request passes untouched and whose response is compressed (gzip's ~1 MiB state), so
// that the response's share is most of what an exchange needs.
const budgetConfig = `
memory: {budget: 3MiB, admission_wait: 50ms}
routes:
  - {name: full-duplex-streamed, request: identity, response: gzip}
`

// TestE2EResponseAfterBudgetSpent: one admission per HTTP exchange, through the real
// Envoy. An upload is admitted while the budget is free; then further uploads take
// the budget until one is refused with 503; only then does the first upload end and
// the upstream (/sink, which answers once it has read the whole request) answer. That
// response must reach the client as the upstream's 200 with its body intact: the
// upstream has carried out the request, and a 503 now would invite a retry of it.
func TestE2EResponseAfterBudgetSpent(t *testing.T) {
	if testing.Short() {
		t.Skip("starts its own stack")
	}
	envoy := harness.RequireEnvoy(t)
	root, err := harness.FindRoot()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	dir := t.TempDir()
	configPath := filepath.Join(dir, "budget.yaml")
	if err := os.WriteFile(configPath, []byte(budgetConfig), 0o644); err != nil {
		t.Fatal(err)
	}
	st, err := harness.Start(ctx, harness.Options{Root: root, Envoy: envoy, Dir: dir,
		BodystreamArgs: []string{"-config", configPath}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Stop() })
	url := st.URL + "/full-duplex-streamed/sink"
	inUse := func() float64 { return bodystreamMetric(t, st.MetricsAddr, "bodystream_memory_budget_in_use_bytes") }

	first := startHeldUpload(ctx, url)
	defer first.abandon()
	chunk := []byte(strings.Repeat("first upload, sent while the budget is free\n", 1000))
	sent := sha256.New()
	first.write(t, chunk)
	sent.Write(chunk)
	waitUntil(t, "the first upload is admitted", func() bool { return inUse() > 0 })

	// Take the rest of the budget with uploads that stay open, until one is refused.
	var held []*heldUpload
	defer func() {
		for _, h := range held {
			h.abandon()
		}
	}()
	refused := false
	for len(held) < 32 && !refused {
		before := inUse()
		h := startHeldUpload(ctx, url)
		h.write(t, []byte("x"))
		waitUntil(t, "the next upload is admitted or refused", func() bool {
			select {
			case r := <-h.done:
				if r.err != nil || r.status != http.StatusServiceUnavailable || r.header.Get("retry-after") == "" {
					t.Fatalf("a held upload ended with %d %v (%v) before its body, want 503 with retry-after", r.status, r.header, r.err)
				}
				refused = true
				return true
			default:
				return inUse() > before
			}
		})
		if !refused {
			held = append(held, h)
		}
	}
	if !refused {
		t.Fatalf("%d uploads admitted and none refused: the budget never ran out", len(held))
	}

	// The budget is spent; now the first upload ends and its response comes.
	first.write(t, chunk)
	sent.Write(chunk)
	first.body.Close()
	r := first.wait(t)
	if r.status != http.StatusOK {
		t.Fatalf("the first upload got %d %q with the budget spent, want the upstream's 200", r.status, r.answer)
	}
	var report sinkReport
	if err := json.Unmarshal(r.answer, &report); err != nil {
		t.Fatalf("the first upload's answer is not the sink's report: %v: %q", err, r.answer)
	}
	if want := hex.EncodeToString(sent.Sum(nil)); report.Bytes != 2*int64(len(chunk)) || report.SHA256 != want {
		t.Fatalf("the upstream saw %d bytes, sha256 %s; sent %d, sha256 %s", report.Bytes, report.SHA256, 2*len(chunk), want)
	}
	t.Logf("first upload answered 200 (content-encoding %q) with %d uploads holding the budget and one refused; passed untouched: %v",
		r.encoding, len(held), bodystreamMetric(t, st.MetricsAddr, "bodystream_budget_passed_untouched_total"))

	for _, h := range held {
		h.body.Close()
		if r := h.wait(t); r.status != http.StatusOK {
			t.Errorf("a held upload got %d %q, want 200", r.status, r.answer)
		}
	}
	held = nil
}

// heldUpload is a POST whose body the test writes, and ends, when it chooses.
type heldUpload struct {
	body *io.PipeWriter
	done chan uploadResult
}

type uploadResult struct {
	status   int
	header   http.Header
	encoding string
	answer   []byte // decoded
	err      error
}

func startHeldUpload(ctx context.Context, url string) *heldUpload {
	pr, pw := io.Pipe()
	h := &heldUpload{body: pw, done: make(chan uploadResult, 1)}
	go func() {
		var r uploadResult
		defer func() { h.done <- r }()
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, pr)
		if err != nil {
			r.err = err
			return
		}
		req.Header.Set("content-type", "text/plain")
		req.Header.Set("accept-encoding", "gzip")
		resp, err := http.DefaultTransport.RoundTrip(req)
		if err != nil {
			r.err = err
			return
		}
		defer resp.Body.Close()
		r.status, r.header, r.encoding = resp.StatusCode, resp.Header, resp.Header.Get("content-encoding")
		var body io.Reader = resp.Body
		if r.encoding == "gzip" {
			zr, err := gzip.NewReader(bufio.NewReader(resp.Body))
			if err != nil {
				r.err = err
				return
			}
			body = zr
		}
		r.answer, r.err = io.ReadAll(body)
	}()
	return h
}

func (h *heldUpload) write(t *testing.T, p []byte) {
	t.Helper()
	if _, err := h.body.Write(p); err != nil {
		t.Fatalf("upload body: %v", err)
	}
}

func (h *heldUpload) wait(t *testing.T) uploadResult {
	t.Helper()
	r := <-h.done
	if r.err != nil {
		t.Fatalf("upload: %v", r.err)
	}
	return r
}

// abandon ends an upload the test no longer needs, and waits for its goroutine.
func (h *heldUpload) abandon() {
	h.body.CloseWithError(fmt.Errorf("abandoned"))
	select {
	case <-h.done:
	case <-time.After(30 * time.Second):
	}
}

// waitUntil polls cond until it holds, or fails the test after a generous while.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	harness.WaitFor(t, what, cond)
}

// bodystreamMetric reads one unlabelled sample (or the sum of a metric's samples) from
// bodystream's /metrics.
func bodystreamMetric(t *testing.T, addr, name string) float64 {
	t.Helper()
	v, err := harness.MetricSum(t.Context(), addr, name)
	if err != nil {
		t.Fatal(err)
	}
	return v
}
