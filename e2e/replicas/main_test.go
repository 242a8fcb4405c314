// Package replicas runs three bodystream replicas behind one real Envoy 1.40 and
// stops, kills and restarts them under a continuous load of uploads.
package replicas

import (
	"net/http"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	// MetricSum scrapes with the default client; its idle connections are not a leak.
	goleak.VerifyTestMain(m, goleak.Cleanup(func(int) { http.DefaultClient.CloseIdleConnections() }))
}
