package bench

import (
	"strings"
	"testing"
	"time"
)

func TestSoakDrift(t *testing.T) {
	const mib = 1 << 20
	minute := func(n int, rss, envoy, goroutines int64) SoakMinute {
		return SoakMinute{Minute: n, BodystreamRSS: rss, EnvoyRSS: envoy, Goroutines: goroutines}
	}
	cases := []struct {
		name    string
		minutes []SoakMinute
		// problems names what must drift, in order; empty means none.
		problems []string
	}{
		{"too short to judge", []SoakMinute{minute(1, 10*mib, 10*mib, 10), minute(2, 900*mib, 10*mib, 10)}, nil},
		{"flat", []SoakMinute{minute(1, 20*mib, 30*mib, 50), minute(2, 60*mib, 40*mib, 80), minute(3, 61*mib, 41*mib, 82), minute(4, 62*mib, 42*mib, 90)}, nil},
		{"warm-up growth is not drift", []SoakMinute{minute(1, 5*mib, 5*mib, 5), minute(2, 100*mib, 100*mib, 80), minute(3, 110*mib, 105*mib, 85), minute(4, 300*mib, 300*mib, 500)}, nil},
		{"bodystream leaks", []SoakMinute{minute(1, 60*mib, 40*mib, 80), minute(2, 60*mib, 40*mib, 80), minute(3, 200*mib, 41*mib, 80), minute(4, 250*mib, 41*mib, 80)}, []string{"bodystream RSS"}},
		{"Envoy grows", []SoakMinute{minute(1, 60*mib, 40*mib, 80), minute(2, 60*mib, 40*mib, 80), minute(3, 60*mib, 140*mib, 80), minute(4, 60*mib, 140*mib, 80)}, []string{"Envoy RSS"}},
		{"goroutines leak", []SoakMinute{minute(1, 60*mib, 40*mib, 80), minute(2, 60*mib, 40*mib, 80), minute(3, 60*mib, 40*mib, 200), minute(4, 60*mib, 40*mib, 80)}, []string{"goroutines"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := soakDrift(tc.minutes)
			if len(got) != len(tc.problems) {
				t.Fatalf("soakDrift = %q, want %d problems naming %q", got, len(tc.problems), tc.problems)
			}
			for i, p := range tc.problems {
				if !strings.Contains(got[i], p) {
					t.Errorf("problem %d = %q, want it to name %q", i, got[i], p)
				}
			}
		})
	}
}

func TestSoakMinutes(t *testing.T) {
	start := time.Unix(1000, 0)
	samples := []soakSample{
		{at: 10 * time.Second, bodystreamRSS: 5, envoyRSS: 7, goroutines: 9, budget: 1},
		{at: 50 * time.Second, bodystreamRSS: 6, envoyRSS: 3, goroutines: 8, budget: 4},
		{at: 70 * time.Second, bodystreamRSS: 2, envoyRSS: 2, goroutines: 2, budget: 0},
	}
	uploads := []stressUpload{
		{Outcome: outcomeOK, Ended: start.Add(30 * time.Second)},
		{Outcome: outcomeBad, Ended: start.Add(61 * time.Second)},
		{Outcome: outcomeFailed, Ended: start.Add(200 * time.Second)},
		{Outcome: outcomeOK}, // never ended: not counted
	}
	got := soakMinutes(samples, uploads, start)
	if len(got) != 4 {
		t.Fatalf("%d minutes, want 4: %+v", len(got), got)
	}
	if m := got[0]; m.BodystreamRSS != 6 || m.EnvoyRSS != 7 || m.Goroutines != 9 || m.BudgetInUse != 4 || m.OK != 1 {
		t.Errorf("minute 1 = %+v, want the peaks 6, 7, 9, 4 and one ok", m)
	}
	if m := got[1]; m.Bad != 1 || m.BodystreamRSS != 2 {
		t.Errorf("minute 2 = %+v, want one bad upload and RSS 2", m)
	}
	if m := got[3]; m.Failed != 1 || m.Minute != 4 {
		t.Errorf("minute 4 = %+v, want one failed upload", m)
	}
}
