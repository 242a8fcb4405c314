package bench

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/bodystream/bodystream/internal/harness"
)

// drillClusterFields are the bodystream cluster's health checks and outlier
// detection for several replicas, as e2e/replicas runs them.
const drillClusterFields = "resources/replicas/bodystream-cluster.yaml"

// drillBodystreamArgs: Envoy takes a draining replica out within about a second, and
// the replica refuses new streams only after 2 s.
var drillBodystreamArgs = []string{"-drain-delay", "2s", "-drain-timeout", "60s"}

// runDrill runs harness.RunReplicaDrill on st under a continuous load: sc.Concurrency
// workers as fast as the stack takes them and two slow ones (1 MiB/s), bodies of
// size/32, size/10, size/4 and size, h1 and h2, the FULL_DUPLEX_STREAMED and STREAMED
// routes. Uploads that failed because a replica was killed under them are not errors:
// the drill kills one on purpose, and their client was told; every other failure and
// any truncated body is. The notes give the outcomes by phase.
func runDrill(ctx context.Context, st *harness.Stack, sc Scenario, clock func(time.Time) float64) ([]UploadResult, map[string]string) {
	load := &harness.Load{
		URL:    st.URL,
		Routes: []string{sc.Route + "/echo", "/streamed/echo"},
		Protos: []harness.Protocol{harness.H1, harness.H2},
		Sizes:  []int64{max(sc.Size/32, 1), max(sc.Size/10, 1), max(sc.Size/4, 1), sc.Size},
		// A slow upload of the largest size is in flight for size/1 MiB seconds.
		Workers: sc.Concurrency, SlowWorkers: 2, SlowRate: 1 << 20,
	}
	load.Start(ctx, harness.DrillPhases[0])
	var mu sync.Mutex
	var steps []string
	drillErr := harness.RunReplicaDrill(ctx, st, load, func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		steps = append(steps, fmt.Sprintf(format, args...))
	})
	outcomes := load.Stop()
	tally := harness.TallyDrill(outcomes)

	uploads := make([]UploadResult, 0, len(outcomes))
	for i, o := range outcomes {
		u := UploadResult{Index: i, Start: clock(o.Start), Seconds: o.Took.Seconds(), Status: o.Status}
		if o.Class == harness.OK {
			// Only what arrived whole counts as bytes moved.
			u.Sent, u.Wire = o.Size, o.Size
		}
		if o.Class != harness.OK && !slices.Contains(tally.Killed, o) {
			u.Err = o.String()
		}
		uploads = append(uploads, u)
	}
	if drillErr != nil {
		uploads = append(uploads, UploadResult{Index: len(uploads), Err: "drill: " + drillErr.Error()})
	}
	notes := map[string]string{
		"drill":    strings.Join(steps, "\n"),
		"outcomes": tally.String(),
		"killed":   fmt.Sprint(len(tally.Killed)),
	}
	return uploads, notes
}
