package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bodystream/bodystream/internal/harness"
)

// These tests run stacks of their own (their bodystream is stopped, or speaks TLS or
// a Unix socket) with the binaries TestMain built for the shared stack.

// startOwnStack starts echo, bodystream and Envoy for one test.
func startOwnStack(t *testing.T, opts harness.Options) *harness.Stack {
	t.Helper()
	shared := needStack(t)
	opts.BinDir, opts.Dir = shared.Dir, t.TempDir()
	s, err := harness.Start(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Stop(); err != nil {
			t.Errorf("stop: %v", err)
		}
		if t.Failed() {
			t.Log(s.Logs(60))
		}
	})
	return s
}

// renderConfig writes src (a file under resources/) to dir with each old string
// replaced by its new one, and returns the copy's path.
func renderConfig(t *testing.T, src, dir string, oldNew ...string) string {
	t.Helper()
	root, err := harness.FindRoot()
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(root, "resources", src))
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	for i := 0; i+1 < len(oldNew); i += 2 {
		if !strings.Contains(text, oldNew[i]) {
			t.Fatalf("%s has no %q to replace", src, oldNew[i])
		}
		text = strings.ReplaceAll(text, oldNew[i], oldNew[i+1])
	}
	dst := filepath.Join(dir, src)
	if err := os.WriteFile(dst, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return dst
}

// waitFor polls cond, bounded, for what another process does on its own time.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	harness.WaitFor(t, what, cond)
}

// healthChecksPass waits until Envoy has health-checked bodystream over gRPC and
// found it SERVING.
func healthChecksPass(t *testing.T, s *harness.Stack) {
	t.Helper()
	waitFor(t, "Envoy's first successful gRPC health check of bodystream", func() bool {
		n, err := s.Admin.Stat(t.Context(), "cluster.bodystream.health_check.success")
		return err == nil && n > 0
	})
}

// uploadOK sends size random bytes through the full-duplex gzip route and checks
// that they come back whole.
func uploadOK(t *testing.T, s *harness.Stack, size int64) {
	t.Helper()
	b := newBody(t, harness.BodyRandom, size, uint64(size))
	got := send(t, s.URL+"/full-duplex-streamed/echo", h2, b, size, http.Header{"Content-Type": {b.ContentType()}})
	if got.Status != http.StatusOK {
		t.Fatalf("status %d: %q", got.Status, got.Head)
	}
	if err := got.Verify(b.Sent()); err != nil {
		t.Fatal(err)
	}
}

// TestE2EEnvoyHealthChecksBodystream: the bundled envoy.yaml health-checks the
// bodystream cluster over gRPC (grpc.health.v1, the ext_proc service name), and
// bodystream answers SERVING.
func TestE2EEnvoyHealthChecksBodystream(t *testing.T) {
	s := needStack(t)
	healthChecksPass(t, s)
	// A check may time out now and then on a busy machine; the host must end healthy.
	waitFor(t, "Envoy to count bodystream healthy", func() bool {
		n, err := s.Admin.Stat(t.Context(), "cluster.bodystream.health_check.healthy")
		return err == nil && n == 1
	})
}

// throttled reads from r at about rate bytes a second, in pieces of chunk bytes:
// an upload from a slow client.
type throttled struct {
	r           io.Reader
	rate, chunk int
}

func (t *throttled) Read(p []byte) (int, error) {
	p = p[:min(len(p), t.chunk)]
	time.Sleep(time.Duration(len(p)) * time.Second / time.Duration(t.rate))
	return t.r.Read(p)
}

type uploadOutcome struct {
	body *harness.Body
	res  harness.Result
	err  error
}

// slowUpload starts a throttled upload through the full-duplex gzip route.
func slowUpload(ctx context.Context, t *testing.T, s *harness.Stack, size int64, rate int) (*harness.Body, <-chan uploadOutcome) {
	b := newBody(t, harness.BodyRandom, size, uint64(size))
	out := make(chan uploadOutcome, 1)
	go func() {
		res, err := harness.Upload(ctx, transports[harness.H2], harness.Request{
			URL: s.URL + "/full-duplex-streamed/echo", Body: &throttled{r: b, rate: rate, chunk: 16 << 10}, Length: size,
			Header: http.Header{"Content-Type": {b.ContentType()}},
		})
		out <- uploadOutcome{b, res, err}
	}()
	return b, out
}

func logOf(t *testing.T, s *harness.Stack, name string) string {
	t.Helper()
	data, err := os.ReadFile(s.Process(name).LogPath)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// TestE2EDrain: SIGTERM to bodystream behind real Envoy, with two throttled uploads
// in flight. Envoy's health checks see NOT_SERVING at once; after the drain delay a
// new request is refused (never served by half); the upload that fits in the drain
// timeout completes byte-exact; the straggler is cut at the timeout with a logged
// reason, and its client sees a failure, never a complete 200.
func TestE2EDrain(t *testing.T) {
	const delay, timeout = "1s", "5s"
	s := startOwnStack(t, harness.Options{BodystreamArgs: []string{"-drain-delay", delay, "-drain-timeout", timeout}})
	healthChecksPass(t, s)

	ctx := t.Context()
	// 3 MiB at 1 MiB/s: about 3 s, well inside delay + timeout from the signal.
	fits, fitsDone := slowUpload(ctx, t, s, 3<<20, 1<<20)
	// 64 MiB at 1 MiB/s: about a minute, far past them.
	straggler, stragglerDone := slowUpload(ctx, t, s, 64<<20, 1<<20)
	waitFor(t, "both uploads under way", func() bool {
		a, _ := fits.Sent()
		b, _ := straggler.Sent()
		return a > 256<<10 && b > 256<<10
	})

	bodystream := s.Process("bodystream")
	if err := bodystream.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "Envoy's health check to see bodystream NOT_SERVING", func() bool {
		n, err := s.Admin.Stat(ctx, "cluster.bodystream.health_check.failure")
		return err == nil && n > 0
	})
	waitFor(t, "bodystream to refuse new streams", func() bool {
		return strings.Contains(logOf(t, s, "bodystream"), "refusing new streams")
	})
	late := newBody(t, harness.BodyRandom, 64<<10, 1)
	res, err := harness.Upload(ctx, transports[harness.H2], harness.Request{URL: s.URL + "/full-duplex-streamed/echo", Body: late, Length: 64 << 10})
	if err == nil && res.Status == http.StatusOK {
		t.Errorf("a request after the drain delay was served: %d", res.Status)
	}
	t.Logf("request after the drain delay: status %d (%v)", res.Status, err)

	got := <-fitsDone
	if got.err != nil || got.res.Status != http.StatusOK {
		t.Fatalf("upload that fits the drain timeout: status %d, %v", got.res.Status, got.err)
	}
	if err := got.res.Verify(got.body.Sent()); err != nil {
		t.Fatalf("upload that fits the drain timeout: %v", err)
	}

	cut := <-stragglerDone
	sent, _ := cut.body.Sent()
	if cut.err == nil && cut.res.Status == http.StatusOK && cut.res.EndedCleanly() {
		t.Fatalf("TRUNCATED: the straggler got a complete 200 with %d of %d bytes (%v)", cut.res.Decoded, 64<<20, cut.res.Verify(cut.body.Sent()))
	}
	t.Logf("straggler: %d bytes sent, status %d, %d bytes back, ended %v (%v)", sent, cut.res.Status, cut.res.Decoded, cut.res.WireEnd, cut.err)

	waitFor(t, "bodystream to exit", func() bool { return processGone(bodystream.Pid()) })
	log := logOf(t, s, "bodystream")
	for _, want := range []string{
		"draining: readiness and gRPC health now NOT_SERVING",
		"open_streams=2 drain_delay=1s",
		"draining: refusing new streams",
		"drain timeout passed: cutting the streams still open",
		"open_streams=1 drain_timeout=5s",
		"msg=stopped open_streams=0",
	} {
		if !strings.Contains(log, want) {
			t.Errorf("bodystream's log lacks %q:\n%s", want, log)
		}
	}
}

// processGone reports whether pid has exited (and been reaped or become a zombie).
func processGone(pid int) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	fields := strings.Fields(string(data))
	return len(fields) > 2 && fields[2] == "Z"
}

// TestE2EMutualTLS: resources/envoy-mtls.yaml talks mTLS to bodystream with
// certificates made for this run: health checks and uploads go through, and a client
// without a certificate is refused.
func TestE2EMutualTLS(t *testing.T) {
	dir := t.TempDir()
	certs, err := harness.GenerateCerts(dir)
	if err != nil {
		t.Fatal(err)
	}
	envoyConfig := renderConfig(t, "envoy-mtls.yaml", dir,
		"/etc/bodystream/tls/client.pem", certs.ClientCert,
		"/etc/bodystream/tls/client-key.pem", certs.ClientKey,
		"/etc/bodystream/tls/ca.pem", certs.CA)
	s := startOwnStack(t, harness.Options{EnvoyConfig: envoyConfig,
		BodystreamArgs: []string{"-tls-cert", certs.ServerCert, "-tls-key", certs.ServerKey, "-tls-client-ca", certs.CA}})
	healthChecksPass(t, s)
	uploadOK(t, s, 4<<20)

	// The binary's own health probe, as a container would run it.
	probe := func(args ...string) error {
		cmd := exec.CommandContext(t.Context(), filepath.Join(needStack(t).Dir, "bodystream"), append([]string{"healthcheck", "-addr", s.BodystreamAddr}, args...)...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("%w: %s", err, out)
		}
		return nil
	}
	if err := probe("-tls-ca", certs.CA, "-tls-server-name", "bodystream", "-tls-cert", certs.ClientCert, "-tls-key", certs.ClientKey); err != nil {
		t.Errorf("healthcheck with a client certificate: %v", err)
	}
	err = probe("-tls-ca", certs.CA, "-tls-server-name", "bodystream")
	if err == nil {
		t.Fatal("a client without a certificate was served")
	}
	t.Logf("client without a certificate: %v", err)
	if err := probe(); err == nil {
		t.Fatal("a plaintext client was served")
	}
}

// TestE2EUnixSocket: resources/envoy-uds.yaml reaches bodystream over a Unix socket
// (a pipe address).
func TestE2EUnixSocket(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "bodystream.sock")
	envoyConfig := renderConfig(t, "envoy-uds.yaml", dir, "/run/bodystream/bodystream.sock", sock)
	s := startOwnStack(t, harness.Options{EnvoyConfig: envoyConfig, NoBodystream: true, Extras: []harness.Extra{{
		Name: "bodystream", Path: filepath.Join(needStack(t).Dir, "bodystream"),
		Args: []string{"-listen", "unix://" + sock, "-admin-listen", "127.0.0.1:0", "-drain-delay", "0s"},
	}}})
	healthChecksPass(t, s)
	uploadOK(t, s, 4<<20)
	if info, err := os.Stat(sock); err != nil || info.Mode().Type() != os.ModeSocket || info.Mode().Perm() != 0o660 {
		t.Fatalf("socket %v (%v), want a socket with mode 0660", info, err)
	}
}
