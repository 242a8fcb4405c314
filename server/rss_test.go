package server

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/bodystream/bodystream/internal/harness"
	"github.com/bodystream/bodystream/internal/harness/readyfile"
)

// rssBudget is the memory budget of TestBufferedBodiesStayWithinBudget's bodystream;
// rssSlack what its RSS may exceed it by (the fixed overhead the Go memory limit
// allows for, app/memlimit.go).
const (
	rssBudget = 256 << 20
	rssSlack  = 64 << 20
)

const rssConfig = `
listen: 127.0.0.1:0
admin_listen: ""
memory: {budget: 256MiB}
pipelines:
  gzip-now: [{gzip: {level: 1, preview_bytes: 0}}]
routes:
  - {name: gzip, request: gzip-now, response: identity}
`

// TestBufferedBodiesStayWithinBudget: 16 streams on one connection each send a 16 MiB
// BUFFERED body at once, as Envoy does (headers, then the body once they are
// answered), through a compressor over random bytes (its output is as large as its
// input). bodystream runs as its own process, built from cmd/bodystream, so that its
// RSS is its own; its peak (VmHWM) stays within the budget plus the fixed overhead.
// Every stream either gets its body back compressed and whole, or a 503 with
// retry-after at its headers, before its body moved.
func TestBufferedBodiesStayWithinBudget(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and starts a bodystream process")
	}
	root, err := harness.FindRoot()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	dir := t.TempDir()
	bin := filepath.Join(dir, "bodystream")
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/bodystream")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	configPath, readyPath := filepath.Join(dir, "bodystream.yaml"), filepath.Join(dir, "ready")
	if err := os.WriteFile(configPath, []byte(rssConfig), 0o644); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	proc := exec.Command(bin, "-config", configPath, "-ready-file", readyPath)
	proc.Stderr = &logs
	proc.Env = withoutEnv(os.Environ(), "GOMEMLIMIT", "GOGC")
	if err := proc.Start(); err != nil {
		t.Fatal(err)
	}
	var exitErr error
	exited := make(chan struct{})
	go func() { exitErr = proc.Wait(); close(exited) }()
	defer func() {
		proc.Process.Signal(syscall.SIGTERM)
		<-exited
		if exitErr != nil {
			t.Errorf("bodystream exited with %v\n%s", exitErr, logs.String())
		}
	}()
	// A bodystream that exits at start-up ends the wait for its ready file.
	readyCtx, stopWaiting := context.WithCancel(ctx)
	go func() {
		select {
		case <-exited:
			stopWaiting()
		case <-readyCtx.Done():
		}
	}()
	addrs, err := readyfile.Wait(readyCtx, readyPath)
	stopWaiting()
	if err != nil {
		t.Fatalf("bodystream did not start: %v", err)
	}
	conn, err := grpc.NewClient(addrs.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	baseRSS, err := processStatus(proc.Process.Pid, "VmRSS")
	if err != nil {
		t.Fatal(err)
	}

	const streams, size = 16, 16 << 20
	body := make([]byte, size)
	rand.NewChaCha8([32]byte{9}).Read(body)
	want := sha256.Sum256(body)
	results := make([]string, streams)
	var wg sync.WaitGroup
	for i := range streams {
		wg.Go(func() { results[i] = sendBuffered(ctx, conn, body, want) })
	}
	wg.Wait()
	hwm, err := processStatus(proc.Process.Pid, "VmHWM")
	if err != nil {
		t.Fatal(err)
	}

	counts := map[string]int{}
	for _, r := range results {
		counts[r]++
	}
	t.Logf("%d streams × %d MiB BUFFERED: %v; bodystream RSS %d MiB at start, peak (VmHWM) %d MiB; budget %d MiB + %d MiB",
		streams, size>>20, counts, baseRSS>>20, hwm>>20, rssBudget>>20, rssSlack>>20)
	for i, r := range results {
		if r != "ok" && r != "503" {
			t.Errorf("stream %d: %s", i, r)
		}
	}
	if counts["ok"] == 0 {
		t.Error("no stream got its body through")
	}
	if hwm > rssBudget+rssSlack {
		t.Errorf("bodystream's peak RSS %d MiB exceeds the budget plus overhead, %d MiB", hwm>>20, (rssBudget+rssSlack)>>20)
	}
}

// sendBuffered plays Envoy for one BUFFERED request body and says how it ended: "ok"
// (the compressed body decompresses to body), "503" (refused at the headers with
// retry-after) or what went wrong.
func sendBuffered(ctx context.Context, conn *grpc.ClientConn, body []byte, want [32]byte) string {
	ctx, cancel := context.WithCancel(metadata.AppendToOutgoingContext(ctx, routeMetadataKey, "gzip"))
	defer cancel()
	s, err := extprocv3.NewExternalProcessorClient(conn).Process(ctx)
	if err != nil {
		return err.Error()
	}
	first := requestHeaders(false, ":path", "/up", "content-length", strconv.Itoa(len(body)))
	first.ProtocolConfig = &extprocv3.ProtocolConfiguration{RequestBodyMode: modeBuffered, ResponseBodyMode: modeNone}
	if err := s.Send(first); err != nil {
		return fmt.Sprintf("send headers: %v", err)
	}
	resp, err := s.Recv()
	switch {
	case err != nil:
		return fmt.Sprintf("headers: %v", err)
	case resp.GetImmediateResponse() != nil:
		ir := resp.GetImmediateResponse()
		if v, _ := setValue(ir.GetHeaders(), "retry-after"); ir.GetStatus().GetCode() != 503 || v == "" {
			return fmt.Sprintf("headers answered with %v", ir)
		}
		return "503"
	case resp.GetRequestHeaders() == nil:
		return fmt.Sprintf("headers answered with %v", resp)
	}
	if err := s.Send(requestBody(body, true)); err != nil {
		return fmt.Sprintf("send body: %v", err)
	}
	if resp, err = s.Recv(); err != nil {
		return fmt.Sprintf("body: %v", err)
	}
	out := resp.GetRequestBody().GetResponse().GetBodyMutation().GetBody()
	if out == nil {
		return fmt.Sprintf("body answered with %v", resp)
	}
	got, err := gunzipBytes(out)
	if err != nil {
		return fmt.Sprintf("body answer: %v", err)
	}
	if sha256.Sum256(got) != want {
		return "body answer decompresses to a different body"
	}
	return "ok"
}

// processStatus reads a "kB" field of /proc/PID/status, in bytes.
func processStatus(pid int, field string) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("/proc/%d/status has no %s", pid, field)
}

func withoutEnv(env []string, names ...string) []string {
	var out []string
	for _, kv := range env {
		name, _, _ := strings.Cut(kv, "=")
		if !slices.Contains(names, name) {
			out = append(out, kv)
		}
	}
	return out
}
