package bench

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/dustin/go-humanize"

	"github.com/bodystream/bodystream/internal/harness"
)

// Soak bounds: what a process may gain between the first loaded minute and the last
// before the run fails. A leak of one buffer or goroutine per upload passes none of
// them within a few minutes at the stress load; a heap that settles passes all.
const (
	// soakRSSSlack is the RSS growth allowed to each process: a fixed part for a
	// heap that has not settled after one minute, plus a share of the baseline.
	soakRSSSlack    = 32 << 20
	soakRSSFraction = 0.25
	// soakGoroutineSlack is the growth allowed to bodystream's goroutine peak.
	soakGoroutineSlack = 32
	// soakSettle is how long bodystream has, once the last upload ended, to give
	// back every byte of its budget and close every stream.
	soakSettle = 30 * time.Second
)

// SoakMinute is one minute of a soak run.
type SoakMinute struct {
	Minute int `json:"minute"`
	// Peaks over the minute's samples.
	BodystreamRSS int64 `json:"bodystream_rss"`
	EnvoyRSS      int64 `json:"envoy_rss"`
	Goroutines    int64 `json:"goroutines"`
	BudgetInUse   int64 `json:"budget_in_use"`
	// Outcomes of the uploads that ended in the minute.
	OK, Failed, Aborted, Bad int
}

// soakSample is one reading of the stack.
type soakSample struct {
	at                        time.Duration
	bodystreamRSS, envoyRSS   int64
	goroutines, budget, count int64
}

// soakSampler reads RSS from /proc and bodystream's gauges from its /metrics.
type soakSampler struct {
	bodystreamPid, envoyPid int
	metricsURL              string
	start                   time.Time

	mu      sync.Mutex
	samples []soakSample
	errs    []string
}

func (s *soakSampler) run(ctx context.Context, every time.Duration) {
	sampleEvery(ctx, every, s.sample)
}

func (s *soakSampler) sample(ctx context.Context) {
	smp := soakSample{at: time.Since(s.start)}
	var errs []string
	if p, err := readProc(s.bodystreamPid); err == nil {
		smp.bodystreamRSS = p.RSS
	} else {
		errs = append(errs, err.Error())
	}
	if p, err := readProc(s.envoyPid); err == nil {
		smp.envoyRSS = p.RSS
	} else {
		errs = append(errs, err.Error())
	}
	gauges, err := harness.ScrapeGauges(ctx, s.metricsURL, "go_goroutines", "bodystream_memory_budget_in_use_bytes", "bodystream_streams_active")
	if err == nil {
		smp.goroutines = int64(gauges["go_goroutines"])
		smp.budget = int64(gauges["bodystream_memory_budget_in_use_bytes"])
		smp.count = int64(gauges["bodystream_streams_active"])
	} else if ctx.Err() == nil {
		errs = append(errs, err.Error())
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(errs) == 0 {
		s.samples = append(s.samples, smp)
	} else if len(s.errs) < 5 {
		s.errs = append(s.errs, errs...)
	}
}

// soakMinutes folds the samples and the uploads into minutes.
func soakMinutes(samples []soakSample, uploads []stressUpload, start time.Time) []SoakMinute {
	var minutes []SoakMinute
	at := func(i int) *SoakMinute {
		for len(minutes) <= i {
			minutes = append(minutes, SoakMinute{Minute: len(minutes) + 1})
		}
		return &minutes[i]
	}
	for _, s := range samples {
		m := at(int(s.at / time.Minute))
		m.BodystreamRSS = max(m.BodystreamRSS, s.bodystreamRSS)
		m.EnvoyRSS = max(m.EnvoyRSS, s.envoyRSS)
		m.Goroutines = max(m.Goroutines, s.goroutines)
		m.BudgetInUse = max(m.BudgetInUse, s.budget)
	}
	for _, u := range uploads {
		if u.Ended.IsZero() {
			continue
		}
		m := at(int(u.Ended.Sub(start) / time.Minute))
		switch u.Outcome {
		case outcomeOK:
			m.OK++
		case outcomeFailed:
			m.Failed++
		case outcomeAborted:
			m.Aborted++
		case outcomeBad:
			m.Bad++
		}
	}
	return minutes
}

// soakDrift compares the first loaded minute with the last whole one and returns what
// grew past its bound. The first minute is the warm-up (pools fill, Envoy connects);
// the last may be cut short by the clock, so the one before it is compared when there
// is one.
func soakDrift(minutes []SoakMinute) []string {
	if len(minutes) < 3 {
		return nil // too short to tell a trend from a warm-up
	}
	first, last := minutes[1], minutes[len(minutes)-2]
	var problems []string
	grew := func(what string, from, to int64) {
		allowed := from + soakRSSSlack + int64(float64(from)*soakRSSFraction)
		if to > allowed {
			problems = append(problems, fmt.Sprintf("%s RSS drifted from %s (minute %d) to %s (minute %d), more than the %s allowed",
				what, humanize.IBytes(uint64(from)), first.Minute, humanize.IBytes(uint64(to)), last.Minute, humanize.IBytes(uint64(allowed))))
		}
	}
	grew("bodystream", first.BodystreamRSS, last.BodystreamRSS)
	grew("Envoy", first.EnvoyRSS, last.EnvoyRSS)
	if last.Goroutines > first.Goroutines+soakGoroutineSlack {
		problems = append(problems, fmt.Sprintf("bodystream goroutines drifted from a peak of %d (minute %d) to %d (minute %d), more than %d",
			first.Goroutines, first.Minute, last.Goroutines, last.Minute, soakGoroutineSlack))
	}
	return problems
}

// settle waits until bodystream has given back its whole budget and closed every
// stream, or soakSettle has passed; what is still held is a leak.
func (s *soakSampler) settle(ctx context.Context) []string {
	ctx, cancel := context.WithTimeout(ctx, soakSettle)
	defer cancel()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	var last map[string]float64
	for {
		g, err := harness.ScrapeGauges(ctx, s.metricsURL, "bodystream_memory_budget_in_use_bytes", "bodystream_streams_active")
		if err == nil {
			last = g
			if g["bodystream_memory_budget_in_use_bytes"] == 0 && g["bodystream_streams_active"] == 0 {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			if last == nil {
				return []string{fmt.Sprintf("could not read bodystream's gauges after the run: %v", err)}
			}
			return []string{fmt.Sprintf("%s after the last upload ended: %.0f bytes of budget still in use, %.0f streams still active",
				soakSettle, last["bodystream_memory_budget_in_use_bytes"], last["bodystream_streams_active"])}
		case <-tick.C:
		}
	}
}

// soakTable is the per-minute report for a terminal.
func soakTable(minutes []SoakMinute) string {
	var b strings.Builder
	fmt.Fprintf(&b, "  %-6s %14s %10s %10s %14s %5s %6s %7s %4s\n", "minute", "bodystream RSS", "Envoy RSS", "goroutines", "budget in use", "ok", "failed", "aborted", "bad")
	for _, m := range minutes {
		fmt.Fprintf(&b, "  %-6d %14s %10s %10d %14s %5d %6d %7d %4d\n", m.Minute,
			humanize.IBytes(uint64(m.BodystreamRSS)), humanize.IBytes(uint64(m.EnvoyRSS)), m.Goroutines,
			humanize.IBytes(uint64(m.BudgetInUse)), m.OK, m.Failed, m.Aborted, m.Bad)
	}
	return b.String()
}
