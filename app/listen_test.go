package app

import (
	"bytes"
	"context"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bodystream/bodystream/internal/harness"
)

// healthcheckRun runs `bodystream healthcheck args...` and returns its error.
func healthcheckRun(args ...string) error {
	var out bytes.Buffer
	return Run(context.Background(), append([]string{"healthcheck"}, args...), &out, &out)
}

// TestUnixSocket: a socket file left behind by a dead process is replaced, the new
// one gets socket_mode, the health check works over it, and it is gone after stop.
func TestUnixSocket(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "b.sock")
	stale, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	stale.(*net.UnixListener).SetUnlinkOnClose(false)
	stale.Close()
	config := writeFile(t, dir, "b.yaml", `socket_mode: "0600"`)

	addrs, stop := startRun(t, io.Discard, "-config", config, "-listen", "unix://"+sock, "-admin-listen", "off", "-drain-delay", "0s")
	if addrs.Addr != "unix://"+sock {
		t.Errorf("announced %q, want unix://%s", addrs.Addr, sock)
	}
	info, err := os.Stat(sock)
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o600 {
		t.Errorf("socket mode %v, want 0600", info.Mode().Perm())
	}
	if err := healthcheckRun("-addr", addrs.Addr); err != nil {
		t.Errorf("healthcheck over the socket: %v", err)
	}
	if err := healthcheckRun("-addr", addrs.Addr, "-service", "envoy.service.ext_proc.v3.ExternalProcessor"); err != nil {
		t.Errorf("healthcheck of the ext_proc service: %v", err)
	}
	if err := healthcheckRun("-addr", addrs.Addr, "-service", "no.such.Service"); err == nil || !strings.Contains(err.Error(), "NotFound") {
		t.Errorf("healthcheck of an unknown service: %v, want NotFound", err)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(sock); !os.IsNotExist(err) {
		t.Errorf("socket still there after stop: %v", err)
	}
}

func TestUnixSocketRefusals(t *testing.T) {
	dir := t.TempDir()
	live := filepath.Join(dir, "live.sock")
	l, err := net.Listen("unix", live)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	file := writeFile(t, dir, "not-a-socket", "data")
	for _, tc := range []struct{ path, want string }{
		{live, "another process is serving on this socket"},
		{file, "exists and is not a socket; not removing it"},
	} {
		err := Run(context.Background(), []string{"-listen", "unix://" + tc.path, "-admin-listen", "off"}, io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.path, err, tc.want)
		}
	}
	if data, _ := os.ReadFile(file); string(data) != "data" {
		t.Error("the regular file was touched")
	}
}

// TestMutualTLS: with a client CA the listener takes only clients whose certificate
// that CA signed.
func TestMutualTLS(t *testing.T) {
	certs, err := harness.GenerateCerts(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	addrs, _ := startRun(t, io.Discard, "-listen", "127.0.0.1:0", "-admin-listen", "off", "-drain-delay", "0s",
		"-tls-cert", certs.ServerCert, "-tls-key", certs.ServerKey, "-tls-client-ca", certs.CA)
	cases := []struct {
		name string
		args []string
		ok   bool
	}{
		{"client certificate", []string{"-tls-ca", certs.CA, "-tls-cert", certs.ClientCert, "-tls-key", certs.ClientKey}, true},
		{"no client certificate", []string{"-tls-ca", certs.CA}, false},
		{"server certificate as a client's (not for client auth)", []string{"-tls-ca", certs.CA, "-tls-cert", certs.ServerCert, "-tls-key", certs.ServerKey}, false},
		{"server not trusted", []string{"-tls-ca", certs.OtherCA, "-tls-cert", certs.ClientCert, "-tls-key", certs.ClientKey}, false},
		{"plaintext", nil, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := healthcheckRun(append([]string{"-addr", addrs.Addr, "-timeout", "5s"}, tc.args...)...)
			if (err == nil) != tc.ok {
				t.Fatalf("healthcheck: %v, want ok=%t", err, tc.ok)
			}
		})
	}
}

// TestDrainTurnsNotReady: on cancel (SIGTERM), /readyz answers 503 and the gRPC
// health service NOT_SERVING during the drain delay, while /healthz stays ok.
func TestDrainTurnsNotReady(t *testing.T) {
	var logs syncBuffer
	addrs, cancel, wait := startRunAsync(t, &logs, "-listen", "127.0.0.1:0", "-admin-listen", "127.0.0.1:0", "-drain-delay", "3s")
	if code, _ := get(t, "http://"+addrs.Metrics+"/readyz"); code != 200 {
		t.Fatalf("/readyz before the drain: %d", code)
	}
	cancel()
	// The drain starts on Run's own goroutine: wait, bounded, for the first step.
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(logs.String(), "draining: readiness") {
		if time.Now().After(deadline) {
			t.Fatalf("no drain logged: %s", logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if code, body := get(t, "http://"+addrs.Metrics+"/readyz"); code != 503 || !strings.Contains(body, "draining") {
		t.Errorf("/readyz while draining: %d %q", code, body)
	}
	if code, _ := get(t, "http://"+addrs.Metrics+"/healthz"); code != 200 {
		t.Errorf("/healthz while draining: %d", code)
	}
	if err := healthcheckRun("-addr", addrs.Addr); err == nil || !strings.Contains(err.Error(), "NOT_SERVING") {
		t.Errorf("healthcheck while draining: %v, want NOT_SERVING", err)
	}
	if err := wait(); err != nil {
		t.Fatal(err)
	}
	for _, step := range []string{"draining: readiness", "draining: refusing new streams", "drained: every stream finished"} {
		if !strings.Contains(logs.String(), step) {
			t.Errorf("log lacks %q", step)
		}
	}
}
