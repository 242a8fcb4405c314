package app

import (
	"strings"
	"testing"
	"time"
)

// budgetAt is a memory budget spent since a given time, or not spent.
type budgetAt struct {
	since time.Time
	spent bool
}

func (b budgetAt) BudgetExhaustedSince() (time.Time, bool) { return b.since, b.spent }

func TestReadiness(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	cases := []struct {
		name     string
		budget   budgetAt
		window   time.Duration
		draining bool
		want     string // "" for ready
	}{
		{"idle", budgetAt{}, 30 * time.Second, false, ""},
		{"spent, but not long", budgetAt{now.Add(-10 * time.Second), true}, 30 * time.Second, false, ""},
		{"spent longer than the window", budgetAt{now.Add(-31 * time.Second), true}, 30 * time.Second, false, "memory budget spent for 31s"},
		{"spent, window off", budgetAt{now.Add(-time.Hour), true}, 0, false, ""},
		{"draining", budgetAt{}, 30 * time.Second, true, "draining"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			st := &state{budget: tc.budget, budgetSpentFor: tc.window}
			st.draining.Store(tc.draining)
			got := st.notReady(now)
			if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
				t.Fatalf("notReady = %q, want %q", got, tc.want)
			}
		})
	}
}
