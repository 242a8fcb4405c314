package faults

import (
	"errors"
	"net/http"
	"sync"
	"testing"

	"github.com/dustin/go-humanize"

	"github.com/bodystream/bodystream/internal/harness"
)

const rejected503 = `bodystream_immediate_responses_total{reason="budget",status="503"}`

// TestOverloadBudget: twelve gzip uploads at once against a 4 MiB memory budget, each
// held open mid-body. Those the budget admits hold it, never more than 4 MiB; the
// others get 503 with retry-after once admission_wait has passed, while their bodies
// are still being sent. Released, every admitted upload completes byte-exact, and the
// budget returns to 0.
func TestOverloadBudget(t *testing.T) {
	s := startStack(t, stackOptions{config: "small-budget.yaml"})
	const uploads, size, pauseAt, budget = 12, 1 << 20, 64 << 10, 4 << 20
	type outcome struct {
		body *harness.Body
		res  harness.Result
		err  error
	}
	outcomes := make([]outcome, uploads)
	gate := make(chan struct{})
	var wg sync.WaitGroup
	for i := range outcomes {
		o := &outcomes[i]
		body, err := harness.NewBody(harness.BodyJSON, size, uint64(i), "")
		if err != nil {
			t.Fatal(err)
		}
		o.body = body
		proto := protocols[i%len(protocols)]
		wg.Go(func() {
			gated := newGatedBody(t.Context(), body, pauseAt, gate)
			o.res, o.err = harness.Upload(t.Context(), s.transports[proto], harness.Request{URL: s.URL + "/full-duplex-streamed/echo",
				Body: gated, Length: size, Header: http.Header{"Content-Type": {"application/json"}, "Accept-Encoding": {"gzip"}}})
		})
	}
	// While every upload is held: some refused, and what the others hold is within
	// the budget.
	s.waitGauge(t, streamsActive, "streams open", func(v float64) bool { return v > 0 })
	for s.optionalGauge(t, rejected503) == 0 {
		if inUse := s.gauges(t, budgetInUse)[budgetInUse]; inUse > budget {
			t.Fatalf("%s = %s, over the %s budget", budgetInUse, humanize.IBytes(uint64(inUse)), humanize.IBytes(budget))
		}
		waitPoll()
	}
	held := s.gauges(t, budgetInUse, streamsActive)
	t.Logf("held: %s of the budget, %v streams", humanize.IBytes(uint64(held[budgetInUse])), held[streamsActive])
	if held[budgetInUse] > budget {
		t.Errorf("%s = %v, over the budget", budgetInUse, held[budgetInUse])
	}
	close(gate)
	wg.Wait()
	var ok, refused int
	for i, o := range outcomes {
		switch {
		case o.err != nil:
			t.Errorf("upload %d: %v", i, o.err)
		case o.res.Status == http.StatusServiceUnavailable:
			refused++
			if o.res.Header.Get("Retry-After") != "2" {
				t.Errorf("upload %d: 503 with retry-after %q, want 2", i, o.res.Header.Get("Retry-After"))
			}
		case o.res.Status == http.StatusOK:
			ok++
			if err := o.res.Verify(o.body.Sent()); err != nil {
				t.Errorf("upload %d: %v", i, err)
			}
		default:
			t.Errorf("upload %d: status %d %q, want 200 or 503", i, o.res.Status, o.res.Head)
		}
	}
	t.Logf("%d completed, %d refused with 503", ok, refused)
	if ok == 0 || refused == 0 {
		t.Errorf("%d completed and %d refused: the budget should admit some and refuse others", ok, refused)
	}
	s.checkNoLeak(t)
}

// optionalGauge reads a series that is absent until it first counts, as 0 until then.
func (s *stack) optionalGauge(t *testing.T, name string) float64 {
	t.Helper()
	g, err := harness.ScrapeGauges(t.Context(), s.metricsURL, name)
	if errors.Is(err, harness.ErrNotExported) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	return g[name]
}
