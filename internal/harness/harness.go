// Package harness is what the end-to-end tests and the bench share: it finds Envoy and
// decides when a test may run without it, starts the stack (echo upstream, bodystream
// and a real Envoy) as processes on free loopback ports, renders Envoy configurations
// for them, reads Envoy's admin, and uploads generated bodies and checks what comes
// back.
package harness

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// FindRoot walks up from the working directory to the directory holding go.mod.
func FindRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("harness: no go.mod above the working directory")
		}
		dir = parent
	}
}

// FindEnvoy returns $ENVOY, else the binary `make envoy` installs under root/.tools.
func FindEnvoy(root string) (string, error) {
	if p := os.Getenv("ENVOY"); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("ENVOY=%s: %w", p, err)
		}
		return p, nil
	}
	p := filepath.Join(root, ".tools", "envoy", "envoy", "_bin", "envoy")
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("no Envoy binary at %s (run `make envoy` or set ENVOY): %w", p, err)
	}
	return p, nil
}

// TB is the part of testing.TB that RequireEnvoy needs; the bench's binaries import
// this package, and they have no business linking the testing package.
type TB interface {
	Helper()
	Skipf(format string, args ...any)
	Fatalf(format string, args ...any)
}

// RequireEnvoy returns the Envoy binary for a test that runs it. Without one the test
// is skipped, so that `go test ./...` works on a machine without Envoy; but with
// CI=true it fails, because CI must run every end-to-end test.
func RequireEnvoy(tb TB) string {
	tb.Helper()
	root, err := FindRoot()
	if err != nil {
		tb.Fatalf("%v", err)
	}
	envoy, err := FindEnvoy(root)
	switch {
	case err == nil:
		return envoy
	case os.Getenv("CI") == "true":
		tb.Fatalf("CI=true requires Envoy: %v", err)
	default:
		tb.Skipf("no Envoy (run `make envoy` or set ENVOY): %v", err)
	}
	return ""
}

// WaitFor polls cond every 20 ms until it holds, for what another process does on its
// own time, and fails tb after a generous 30 s: never a bound on speed.
func WaitFor(tb TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
