package app

import (
	"fmt"
	"io"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// adminMux serves the admin listener: /metrics, /healthz (liveness: the process
// answers), /readyz (readiness: not draining, and the memory budget not spent for
// longer than readiness.budget_spent_for) and, with withPProf, /debug/pprof/.
func adminMux(registry *prometheus.Registry, st *state, withPProf bool) *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if reason := st.notReady(time.Now()); reason != "" {
			http.Error(w, "not ready: "+reason, http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ready\n")
	})
	if withPProf {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	return mux
}

// notReady says why bodystream should get no new traffic, or "" when it should.
func (st *state) notReady(now time.Time) string {
	if st.draining.Load() {
		return "draining"
	}
	if since, spent := st.budget.BudgetExhaustedSince(); spent && st.budgetSpentFor > 0 {
		if d := now.Sub(since); d >= st.budgetSpentFor {
			return fmt.Sprintf("memory budget spent for %s (readiness.budget_spent_for %s)", d.Truncate(time.Second), st.budgetSpentFor)
		}
	}
	return ""
}
