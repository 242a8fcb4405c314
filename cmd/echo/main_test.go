package main

import (
	"context"
	"errors"
	"net/http"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/bodystream/bodystream/internal/harness/readyfile"
	"github.com/bodystream/bodystream/internal/syncbuf"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// echoServer is one Run of the echo server, started the way the harness starts it.
type echoServer struct {
	addr      string
	readyFile string
	stderr    *syncbuf.Buffer
	h1        *http.Client // HTTP/1.1 only
	h2c       *http.Client // HTTP/2 with prior knowledge over plain TCP
	stopOnce  sync.Once
	stopErr   error
	stopFn    func() error
}

// startEcho runs Run with args on a free port and waits for its ready file. The
// server stops when the test ends, if the test has not stopped it before.
func startEcho(tb testing.TB, args ...string) *echoServer {
	tb.Helper()
	readyFile := filepath.Join(tb.TempDir(), "echo.addr")
	stderr := new(syncbuf.Buffer)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	args = append([]string{"-listen", "127.0.0.1:0", "-ready-file", readyFile}, args...)
	go func() { done <- Run(ctx, args, new(syncbuf.Buffer), stderr) }()

	addr, err := waitForReadyFile(readyFile, done)
	if err != nil {
		cancel()
		tb.Fatalf("echo did not start: %v\nstderr:\n%s", err, stderr)
	}

	h1 := &http.Transport{DisableCompression: true}
	var h2cOnly http.Protocols
	h2cOnly.SetUnencryptedHTTP2(true)
	h2c := &http.Transport{Protocols: &h2cOnly, DisableCompression: true}
	s := &echoServer{
		addr:      addr,
		readyFile: readyFile,
		stderr:    stderr,
		h1:        &http.Client{Transport: h1},
		h2c:       &http.Client{Transport: h2c},
	}
	s.stopFn = func() error {
		// Idle client connections would otherwise keep the server's graceful
		// shutdown waiting, and their goroutines would outlive the test.
		h1.CloseIdleConnections()
		h2c.CloseIdleConnections()
		cancel()
		return <-done
	}
	tb.Cleanup(func() {
		if err := s.stop(); err != nil {
			tb.Errorf("Run returned %v after cancel, want nil", err)
		}
		if tb.Failed() {
			tb.Logf("echo stderr:\n%s", stderr)
		}
	})
	return s
}

// stop cancels Run's context and returns what Run returned.
func (s *echoServer) stop() error {
	s.stopOnce.Do(func() { s.stopErr = s.stopFn() })
	return s.stopErr
}

func (s *echoServer) url(path string) string { return "http://" + s.addr + path }

// waitForReadyFile waits for the file the harness also waits for: there is no
// channel to wait on across a process boundary, and this is the interface under test.
// It gives up when Run returns first.
func waitForReadyFile(name string, done <-chan error) (string, error) {
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	returned := make(chan struct{})
	defer close(returned)
	go func() {
		select {
		case err := <-done:
			cancel(errors.Join(errors.New("Run returned before listening"), err))
		case <-returned:
		}
	}()
	ctx, stop := context.WithTimeoutCause(ctx, 10*time.Second, errors.New("no ready file after 10s"))
	defer stop()
	addrs, err := readyfile.Wait(ctx, name)
	return addrs.Addr, err
}
