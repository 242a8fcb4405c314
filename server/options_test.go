package server

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestUnknownRouteIsLoud: every stream naming an unknown route is counted, and each
// name is logged once.
func TestUnknownRouteIsLoud(t *testing.T) {
	srv, _ := newServer(t, testConfig)
	var logged bytes.Buffer
	srv.log = slog.New(slog.NewTextHandler(&logged, nil))
	for _, name := range []string{"typo", "typo", "other", "typo"} {
		srv.unknownRoute(name)
	}
	if n := testutil.ToFloat64(srv.metrics.unknownRoutes); n != 4 {
		t.Errorf("bodystream_unknown_route_total %v, want 4", n)
	}
	lines := strings.Split(strings.TrimSpace(logged.String()), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], "route=typo") || !strings.Contains(lines[1], "route=other") {
		t.Errorf("log:\n%s\nwant one line for typo and one for other", logged.String())
	}
}
