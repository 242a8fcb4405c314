package app

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/bodystream/bodystream/internal/harness/readyfile"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func writeFile(t *testing.T, dir, name, text string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestCheckConfig(t *testing.T) {
	dir := t.TempDir()
	good := writeFile(t, dir, "good.yaml", "pipelines: {p: [{gzip: {level: 9}}]}\nroutes: [{name: r, request: p}]\n")
	cases := []struct {
		name string
		args []string
		want string // "" for ok
	}{
		{"good file", []string{"-check-config", good}, ""},
		{"stage option", []string{"-check-config", writeFile(t, dir, "bad.yaml", "pipelines: {p: [{gzip: {level: 12}}]}\n")},
			"pipelines.p[0].gzip: level: must be between 1 and 9, got 12"},
		{"listen not an address", []string{"-check-config", writeFile(t, dir, "addr.yaml", `listen: "not an address"`)},
			`listen: "not an address" is not an address`},
		{"a flag overrides the file", []string{"-check-config", good, "-listen", "not an address"}, `listen: "not an address" is not an address`},
		{"a flag mends the file", []string{"-check-config", writeFile(t, dir, "mend.yaml", "log_format: xml"), "-log-format", "json"}, ""},
		{"missing certificate", []string{"-check-config", good, "-tls-cert", filepath.Join(dir, "none.pem"), "-tls-key", filepath.Join(dir, "none.key")},
			"tls.cert, tls.key: open " + filepath.Join(dir, "none.pem")},
		{"client CA without certificate", []string{"-check-config", good, "-tls-client-ca", good}, "tls.client_ca: needs tls.cert and tls.key"},
		{"socket directory missing", []string{"-check-config", good, "-listen", "unix://" + filepath.Join(dir, "no", "b.sock")},
			"listen: socket directory: stat " + filepath.Join(dir, "no")},
		{"socket path is a file", []string{"-check-config", good, "-listen", "unix://" + good}, "exists and is not a socket"},
		{"file stage directory missing", []string{"-check-config", writeFile(t, dir, "file.yaml",
			"pipelines: {a: [{file: {dir: "+filepath.Join(dir, "archive")+"}}]}\nroutes: [{name: a, request: a}]\n")},
			"pipelines.a[0].file: dir: stat " + filepath.Join(dir, "archive")},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			err := Run(context.Background(), tc.args, &out, &out)
			if tc.want == "" {
				if err != nil || !strings.Contains(out.String(), ": ok") {
					t.Fatalf("want ok, got %v %q", err, out.String())
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

// TestExampleConfigOnAFreshMachine: the shipped resources/bodystream.yaml fails
// -check-config with exactly one error, the archive directory its header comment says
// to create, and passes once that directory exists.
func TestExampleConfigOnAFreshMachine(t *testing.T) {
	_, file, _, _ := runtime.Caller(0)
	example, err := os.ReadFile(filepath.Join(filepath.Dir(file), "..", "resources", "bodystream.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(example), "mkdir -p /tmp/bodystream-archive") {
		t.Fatal("the example no longer tells what to create first")
	}
	dir := t.TempDir()
	archive := filepath.Join(dir, "archive")
	path := writeFile(t, dir, "bodystream.yaml", strings.ReplaceAll(string(example), "/tmp/bodystream-archive", archive))
	var out bytes.Buffer
	err = Run(context.Background(), []string{"-check-config", path}, &out, &out)
	if err == nil || strings.Count(err.Error(), "\n") != 0 || !strings.Contains(err.Error(), "pipelines.archived[1].file: dir: stat "+archive) {
		t.Fatalf("without the archive directory: %v, want one error naming it", err)
	}
	if err := os.Mkdir(archive, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := Run(context.Background(), []string{"-check-config", path}, &out, &out); err != nil {
		t.Fatalf("with the archive directory: %v", err)
	}
}

func TestHelpAndVersion(t *testing.T) {
	var out, errOut bytes.Buffer
	if err := Run(context.Background(), []string{"-h"}, &out, &errOut); err != nil {
		t.Fatalf("-h: %v, want no error (exit 0)", err)
	}
	for _, flag := range []string{"-config", "-check-config", "-listen", "-admin-listen", "-pprof", "-tls-cert", "-tls-key",
		"-tls-client-ca", "-drain-delay", "-drain-timeout", "-log-format", "-log-level", "-ready-file", "-version", "healthcheck"} {
		if !strings.Contains(errOut.String(), flag) {
			t.Errorf("-h does not mention %s", flag)
		}
	}
	out.Reset()
	if err := Run(context.Background(), []string{"-version"}, &out, &errOut); err != nil || !strings.HasPrefix(out.String(), "bodystream ") ||
		!strings.Contains(out.String(), runtime.Version()) {
		t.Fatalf("-version: %v %q", err, out.String())
	}
	if err := Run(context.Background(), []string{"serve"}, &out, &errOut); err == nil {
		t.Fatal("a stray argument was accepted")
	}
}

// startRun runs the whole program with args on free ports and returns its addresses
// and a stop function that cancels it (as SIGTERM would) and returns Run's error.
func startRun(t *testing.T, logs io.Writer, args ...string) (readyfile.Addrs, func() error) {
	addrs, cancel, wait := startRunAsync(t, logs, args...)
	return addrs, func() error { cancel(); return wait() }
}

// startRunAsync is startRun with the cancel (SIGTERM) and the wait for Run apart.
func startRunAsync(t *testing.T, logs io.Writer, args ...string) (readyfile.Addrs, context.CancelFunc, func() error) {
	t.Helper()
	ready := filepath.Join(t.TempDir(), "ready")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, append([]string{"-ready-file", ready}, args...), io.Discard, logs)
	}()
	// Run writes the ready file once it listens; a file is the only signal a separate
	// process would have, so the test uses the same.
	waitCtx, stop := context.WithTimeout(ctx, 20*time.Second)
	addrs, err := readyfile.Wait(waitCtx, ready)
	stop()
	if err != nil {
		cancel()
		t.Fatalf("ready file: %v (Run: %v)", err, <-done)
	}
	var result error
	var waited bool
	wait := func() error {
		if !waited {
			waited, result = true, <-done
		}
		return result
	}
	t.Cleanup(func() { cancel(); wait() })
	return addrs, cancel, wait
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	resp, err := client.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// TestRunServesUntilCancelled starts the whole program on free ports, checks its
// admin endpoints, and that cancelling its context stops it cleanly.
func TestRunServesUntilCancelled(t *testing.T) {
	addrs, stop := startRun(t, os.Stderr, "-listen", "127.0.0.1:0", "-admin-listen", "127.0.0.1:0", "-log-level", "warn", "-drain-delay", "0s")
	if code, body := get(t, "http://"+addrs.Metrics+"/metrics"); code != 200 || !strings.Contains(body, "bodystream_streams_active") {
		t.Errorf("/metrics: %d, bodystream_streams_active in it: %t", code, strings.Contains(body, "bodystream_streams_active"))
	}
	if code, _ := get(t, "http://"+addrs.Metrics+"/healthz"); code != 200 {
		t.Errorf("/healthz: %d", code)
	}
	if code, body := get(t, "http://"+addrs.Metrics+"/readyz"); code != 200 {
		t.Errorf("/readyz: %d %q", code, body)
	}
	if code, _ := get(t, "http://"+addrs.Metrics+"/debug/pprof/"); code != 404 {
		t.Errorf("/debug/pprof/ without -pprof: %d, want 404", code)
	}
	if err := stop(); err != nil {
		t.Fatalf("Run returned %v after cancel", err)
	}
}

func TestPProfBehindFlag(t *testing.T) {
	addrs, _ := startRun(t, io.Discard, "-listen", "127.0.0.1:0", "-admin-listen", "127.0.0.1:0", "-pprof", "-drain-delay", "0s")
	if code, body := get(t, "http://"+addrs.Metrics+"/debug/pprof/"); code != 200 || !strings.Contains(body, "goroutine") {
		t.Fatalf("/debug/pprof/ with -pprof: %d", code)
	}
}

// TestJSONLogs: -log-format json makes every line a JSON object.
func TestJSONLogs(t *testing.T) {
	var logs syncBuffer
	_, stop := startRun(t, &logs, "-listen", "127.0.0.1:0", "-admin-listen", "off", "-log-format", "json", "-drain-delay", "0s")
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	if len(lines) < 2 {
		t.Fatalf("want the serving and drain lines, got %q", logs.String())
	}
	var serving, drain bool
	for _, l := range lines {
		if !strings.HasPrefix(l, `{"time":`) || !json.Valid([]byte(l)) {
			t.Errorf("not a JSON log line: %s", l)
		}
		serving = serving || strings.Contains(l, `"msg":"bodystream serving"`)
		drain = drain || strings.Contains(l, `"open_streams"`)
	}
	if !serving || !drain {
		t.Errorf("want the serving line and a drain line with open_streams among %q", lines)
	}
}

// TestSignalAtStart: a signal that arrives while Run is still starting (here, before
// it starts) stops it cleanly: no error, whichever of serving and draining runs first.
func TestSignalAtStart(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := Run(ctx, []string{"-listen", "127.0.0.1:0", "-admin-listen", "off", "-drain-delay", "0s", "-log-level", "error"}, io.Discard, io.Discard); err != nil {
		t.Fatalf("Run with a signal at start: %v", err)
	}
}
