package replicas

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/bodystream/bodystream/internal/harness"
)

// TestE2EReplicas: three bodystream replicas behind one Envoy cluster with gRPC
// health checks, outlier detection and retries of what never reached a replica
// (resources/replicas/bodystream-cluster.yaml, resources/envoy.yaml), under a
// continuous load of uploads: h1 and h2, FULL_DUPLEX_STREAMED and STREAMED, 64 KiB to
// 2 MiB, some from slow clients. harness.RunReplicaDrill checks that streams spread
// over all three, that a replica sent SIGTERM turns unready, is taken out by Envoy
// and drains, that after a SIGKILL new uploads reach the survivors, and that each
// restarted replica gets streams again. This test checks the uploads: not one fails
// or is truncated, but those in flight when a replica was killed, and those fail
// where the client sees it (a 5xx, or a response cut short); every 200 came back
// byte for byte.
func TestE2EReplicas(t *testing.T) {
	harness.RequireEnvoy(t)
	root, err := harness.FindRoot()
	if err != nil {
		t.Fatal(err)
	}
	// The stack's logs stay for a failed run, and the path is logged.
	dir, err := os.MkdirTemp("", "bodystream-replicas-")
	if err != nil {
		t.Fatal(err)
	}
	s, err := harness.Start(t.Context(), harness.Options{
		Root: root, Dir: dir, Concurrency: 2, Replicas: 3,
		BodystreamClusterFields: filepath.Join(root, "resources", "replicas", "bodystream-cluster.yaml"),
		// Envoy takes a draining replica out after two failed checks 0.3 s apart; the
		// replica refuses new streams only after 2 s.
		BodystreamArgs: []string{"-drain-delay", "2s", "-drain-timeout", "30s"},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Stop(); err != nil {
			t.Errorf("stop: %v", err)
		}
		if t.Failed() {
			t.Logf("%s\nthe stack's logs and configuration are kept in %s", s.Logs(80), dir)
			return
		}
		os.RemoveAll(dir)
	})

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	load := &harness.Load{
		URL:    s.URL,
		Routes: []string{"/full-duplex-streamed/echo", "/streamed/echo"},
		Protos: []harness.Protocol{harness.H1, harness.H2},
		Sizes:  []int64{64 << 10, 512 << 10, 2 << 20, 200 << 10},
		// 2 MiB at 2 MiB/s: a slow upload is in flight for about a second.
		Workers: 3, SlowWorkers: 2, SlowRate: 2 << 20,
	}
	load.Start(ctx, harness.DrillPhases[0])
	drillErr := harness.RunReplicaDrill(ctx, s, load, t.Logf)
	tally := harness.TallyDrill(load.Stop())
	t.Logf("outcomes:\n%s", tally)
	if drillErr != nil {
		t.Fatal(drillErr)
	}
	if len(tally.Wrong) > 0 {
		t.Errorf("%d uploads failed or were truncated outside the kill (listed above as WRONG)", len(tally.Wrong))
	}
	if len(tally.Killed) == 0 {
		t.Errorf("no upload failed when a replica with streams in flight was killed")
	}
	for _, phase := range harness.DrillPhases {
		if tally.ByPhase[phase][harness.OK] == 0 {
			t.Errorf("no upload succeeded in phase %s", phase)
		}
	}
	stats, err := s.Admin.Stats(t.Context(), "cluster.bodystream.")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"health_check.failure", "outlier_detection.ejections_enforced_total", "upstream_cx_connect_fail", "upstream_rq_retry", "upstream_rq_retry_success", "retry_or_shadow_abandoned"} {
		t.Logf("envoy cluster.bodystream.%s = %d", name, stats["cluster.bodystream."+name])
	}
}
