package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"net/http"
	"sync/atomic"
	"testing"
	"time"
)

// markedReader counts what the client has taken of a request body and says once
// when that passes a mark.
type markedReader struct {
	r      io.Reader
	n      atomic.Int64
	mark   int64
	passed chan struct{}
}

func (c *markedReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	after := c.n.Add(int64(n))
	if after-int64(n) < c.mark && after >= c.mark {
		close(c.passed)
	}
	return n, err
}

// TestStalledStreamDoesNotStallItsConnection is the upstream half of a 500-upload
// run: many uploads share one HTTP/2 connection from Envoy, and one whose response
// is not being read must not stop the others. Stream A's response is never read,
// so its handler blocks on writing and stops reading A's body; what A has sent by
// then stays unread, counted against the connection's window. If that window is no
// larger than a stream's, A alone uses it up and stream B never gets another byte.
func TestStalledStreamDoesNotStallItsConnection(t *testing.T) {
	s := startEcho(t)

	// A client that reads little ahead, so that A's handler blocks early.
	var h2cOnly http.Protocols
	h2cOnly.SetUnencryptedHTTP2(true)
	tr := &http.Transport{
		Protocols:          &h2cOnly,
		DisableCompression: true,
		HTTP2:              &http.HTTP2Config{MaxReceiveBufferPerStream: 64 << 10},
	}
	t.Cleanup(tr.CloseIdleConnections)
	client := &http.Client{Transport: tr}

	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()

	// A: an endless body whose echo nobody reads.
	aCtx, stopA := context.WithCancel(ctx)
	aBody := &markedReader{r: rand.Reader, mark: 32 << 10, passed: make(chan struct{})}
	aReq, err := http.NewRequestWithContext(aCtx, http.MethodPost, s.url("/echo"), aBody)
	if err != nil {
		t.Fatal(err)
	}
	aDone := make(chan error, 1)
	go func() {
		resp, err := client.Do(aReq)
		if err == nil {
			<-aCtx.Done() // hold the response unread until B is through
			resp.Body.Close()
		}
		aDone <- err
	}()
	defer func() {
		stopA()
		<-aDone
	}()
	select {
	case <-aBody.passed:
	case err := <-aDone:
		t.Fatalf("stream A ended before it sent 32 KiB: %v", err)
	case <-ctx.Done():
		t.Fatal("stream A did not send 32 KiB")
	}

	// B, on the same connection, goes through whole while A stays stalled. B sends
	// far more than a connection window of 1 MiB, so B cannot slip through on what
	// A has not yet taken of it.
	want := make([]byte, 16<<20)
	rand.Read(want)
	bReq, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url("/echo"), bytes.NewReader(want))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := client.Do(bReq)
	if err != nil {
		t.Fatalf("stream B: %v", err)
	}
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("stream B's response, after %d of %d bytes, while stream A had sent %d: %v",
			len(got), len(want), aBody.n.Load(), err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("stream B's echo differs: %d bytes, want %d", len(got), len(want))
	}
	select {
	case err := <-aDone:
		t.Fatalf("stream A ended while it should have been stalled: %v", err)
	default:
	}
}
