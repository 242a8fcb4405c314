package replicas

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bodystream/bodystream/internal/harness"
)

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	harness.WaitFor(t, what, cond)
}

// streams returns how many ext_proc streams the replica has ended, any result.
func streams(t *testing.T, r *harness.Replica) float64 {
	t.Helper()
	n, err := harness.MetricSum(t.Context(), r.MetricsAddr, "bodystream_streams_total")
	if err != nil {
		t.Fatalf("%s: %v", r.Name, err)
	}
	return n
}

// healthy waits until Envoy counts n healthy bodystream hosts.
func healthy(t *testing.T, s *harness.Stack, n int64) {
	t.Helper()
	waitFor(t, fmt.Sprintf("Envoy to count %d healthy bodystream replicas", n), func() bool {
		got, err := s.Admin.Stat(t.Context(), "cluster.bodystream.membership_healthy")
		return err == nil && got == n
	})
}

// TestE2EReplicas: three bodystream replicas behind one Envoy cluster with gRPC
// health checks and outlier detection, under a continuous load of uploads (h1 and
// h2, FULL_DUPLEX_STREAMED and STREAMED, 64 KiB to 2 MiB, some from slow clients).
// Streams spread over all three; a replica sent SIGTERM drains without one upload
// failing; a replica sent SIGKILL fails its in-flight uploads with an error the
// client sees (never a 200 with a cut body) and new uploads go to the survivors; a
// restarted replica gets streams again. Every 200 is checked byte for byte.
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
	healthy(t, s, 3)
	r1, r2, r3 := s.Replicas[0], s.Replicas[1], s.Replicas[2]

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
	load.Start(ctx, "spread")
	var outcomes []harness.Outcome
	stopped := false
	stop := func() {
		if !stopped {
			stopped, outcomes = true, load.Stop()
		}
	}
	defer stop()

	// 1. Streams spread over all three.
	waitFor(t, "every replica to serve streams", func() bool {
		return streams(t, r1) >= 3 && streams(t, r2) >= 3 && streams(t, r3) >= 3
	})

	// 2. SIGTERM to replica 1: readiness false, Envoy's health check takes it out,
	// its streams finish, it exits 0; no upload fails meanwhile.
	load.SetPhase("drain")
	p1 := s.Process(r1.Name)
	if err := p1.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitFor(t, r1.Name+"'s /readyz to turn false", func() bool {
		resp, err := http.Get("http://" + r1.MetricsAddr + "/readyz")
		if err != nil {
			return true // already gone
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusServiceUnavailable
	})
	healthy(t, s, 2)
	if err := waitExit(t, p1); err != nil {
		t.Errorf("%s after SIGTERM: %v", r1.Name, err)
	}
	log := readLog(t, p1)
	for _, want := range []string{"draining: readiness and gRPC health now NOT_SERVING", "draining: refusing new streams", "drained: every stream finished"} {
		if !strings.Contains(log, want) {
			t.Errorf("%s's log lacks %q", r1.Name, want)
		}
	}

	// 3. Replica 1 restarted on its address: Envoy's health check finds it and it
	// gets streams again.
	load.SetPhase("restart-1")
	if err := s.Restart(t.Context(), r1.Name); err != nil {
		t.Fatal(err)
	}
	healthy(t, s, 3)
	waitFor(t, "the restarted "+r1.Name+" to serve streams", func() bool { return streams(t, r1) >= 3 })

	// 4. SIGKILL to replica 2 while it has uploads in flight.
	waitFor(t, r2.Name+" to have streams in flight", func() bool {
		n, err := harness.MetricSum(t.Context(), r2.MetricsAddr, "bodystream_streams_active")
		return err == nil && n >= 1
	})
	load.SetPhase("kill")
	p2 := s.Process(r2.Name)
	if err := p2.Cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	healthy(t, s, 2)
	// Uploads that started before Envoy took it out may still have been on it; give
	// the last of them (a slow 2 MiB upload takes about a second) time to end.
	time.Sleep(3 * time.Second)

	// 5. New uploads go to the survivors, all of them succeed.
	load.SetPhase("survivors")
	before1, before3 := streams(t, r1), streams(t, r3)
	waitFor(t, "both survivors to serve new streams", func() bool {
		return streams(t, r1) >= before1+3 && streams(t, r3) >= before3+3 && load.Count("survivors", harness.OK) >= 10
	})

	// 6. Replica 2 restarted gets streams again.
	load.SetPhase("restart-2")
	if err := s.Restart(t.Context(), r2.Name); err != nil {
		t.Fatal(err)
	}
	healthy(t, s, 3)
	waitFor(t, "the restarted "+r2.Name+" to serve streams", func() bool { return streams(t, r2) >= 3 })
	stop()

	phases := []string{"spread", "drain", "restart-1", "kill", "survivors", "restart-2"}
	kill := slices.Index(phases, "kill")
	byPhase := map[string]map[harness.OutcomeClass]int{}
	for _, o := range outcomes {
		if byPhase[o.Ended] == nil {
			byPhase[o.Ended] = map[harness.OutcomeClass]int{}
		}
		byPhase[o.Ended][o.Class]++
		// An upload that overlapped the kill may have been on the killed replica.
		killed := slices.Index(phases, o.Started) <= kill && slices.Index(phases, o.Ended) >= kill
		switch {
		case o.Class == harness.Truncated:
			t.Errorf("TRUNCATED (%s to %s): %s %s %d bytes: a 200 with other bytes than sent: %s", o.Started, o.Ended, o.Proto, o.Route, o.Size, o.Reason)
		case o.Class == harness.Failed && !killed:
			t.Errorf("upload failed (%s to %s): %s %s %d bytes: %s", o.Started, o.Ended, o.Proto, o.Route, o.Size, o.Reason)
		case o.Class == harness.Failed:
			t.Logf("failed by the kill (%s to %s): %s %s %d bytes: status %d: %s", o.Started, o.Ended, o.Proto, o.Route, o.Size, o.Status, o.Reason)
		}
	}
	for _, phase := range phases {
		t.Logf("%-10s ok %3d  failed %2d  truncated %d", phase, byPhase[phase][harness.OK], byPhase[phase][harness.Failed], byPhase[phase][harness.Truncated])
	}
	stats, err := s.Admin.Stats(t.Context(), "cluster.bodystream.")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"health_check.failure", "outlier_detection.ejections_enforced_total", "upstream_cx_connect_fail", "upstream_rq_retry", "upstream_rq_retry_success"} {
		t.Logf("envoy cluster.bodystream.%s = %d", name, stats["cluster.bodystream."+name])
	}
	if byPhase["kill"][harness.Failed]+byPhase["survivors"][harness.Failed]+byPhase["restart-2"][harness.Failed] == 0 {
		t.Errorf("no upload failed when %s was killed with streams in flight", r2.Name)
	}
	for _, phase := range []string{"spread", "drain", "survivors"} {
		if byPhase[phase][harness.OK] == 0 {
			t.Errorf("no upload succeeded in phase %s", phase)
		}
	}
}

// waitExit waits for the process to end, and returns its exit error.
func waitExit(t *testing.T, p *harness.Process) error {
	t.Helper()
	select {
	case <-p.Done():
		return p.Err()
	case <-time.After(30 * time.Second):
		t.Fatalf("%s did not exit", p.Name)
		return nil
	}
}

func readLog(t *testing.T, p *harness.Process) string {
	t.Helper()
	data, err := os.ReadFile(p.LogPath)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}
