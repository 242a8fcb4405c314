package app

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/bodystream/bodystream/internal/harness/readyfile"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestCheckConfig(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(good, []byte("pipelines: {p: [{gzip: {level: 9}}]}\nroutes: [{name: r, request: p}]\n"), 0o644)
	os.WriteFile(bad, []byte("pipelines: {p: [{gzip: {level: 12}}]}\n"), 0o644)

	var out bytes.Buffer
	if err := Run(context.Background(), []string{"-check-config", good}, &out, &out); err != nil || !strings.Contains(out.String(), "ok") {
		t.Fatalf("good file: %v %q", err, out.String())
	}
	err := Run(context.Background(), []string{"-check-config", bad}, &out, &out)
	if err == nil || !strings.Contains(err.Error(), "pipelines.p[0].gzip: level: must be between 1 and 9, got 12") {
		t.Fatalf("bad file: %v", err)
	}
}

// TestRunServesUntilCancelled starts the whole program on free ports, checks that it
// serves metrics, and that cancelling its context stops it cleanly.
func TestRunServesUntilCancelled(t *testing.T) {
	ready := filepath.Join(t.TempDir(), "ready")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, []string{"-listen", "127.0.0.1:0", "-metrics-listen", "127.0.0.1:0", "-ready-file", ready, "-log-level", "warn"}, os.Stdout, os.Stderr)
	}()
	// Run writes the ready file once it listens; a file is the only signal a separate
	// process would have, so the test uses the same.
	waitCtx, stop := context.WithTimeout(ctx, 10*time.Second)
	addrs, err := readyfile.Wait(waitCtx, ready)
	stop()
	if err != nil {
		t.Fatalf("ready file: %v", err)
	}
	metricsAddr := addrs.Metrics
	client := &http.Client{Transport: &http.Transport{}}
	resp, err := client.Get("http://" + metricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	var body bytes.Buffer
	body.ReadFrom(resp.Body)
	resp.Body.Close()
	client.CloseIdleConnections()
	if !strings.Contains(body.String(), "bodystream_streams_active") {
		t.Error("metrics do not include bodystream_streams_active")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run returned %v after cancel", err)
	}
}
