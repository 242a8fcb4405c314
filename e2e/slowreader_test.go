package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"io"
	"math/rand/v2"
	"net/http"
	"testing"
	"time"

	"github.com/bodystream/bodystream/internal/harness"
)

// TestE2ESlowReaderKeepsTheTail: a full-duplex HTTP/1.1 response starts before its
// upload ends, so Envoy closes the connection after it. A client that pauses reading
// near the end, as a CPU-starved one does, must still get every byte and the end of
// the chunked body: Envoy must not cut the connection on its delayed-close timer
// (1 s by default; resources/envoy.yaml sets it long enough).
func TestE2ESlowReaderKeepsTheTail(t *testing.T) {
	st := needStack(t)
	const size, unreadAtPause = 32 << 20, 6 << 20
	body := make([]byte, size)
	rand.NewChaCha8([32]byte{7}).Read(body) // incompressible: the route passes it as it is
	const counter = "http.ingress.downstream_cx_delayed_close_timeout"
	before, err := st.Admin.Stat(t.Context(), counter)
	if err != nil {
		t.Fatal(err)
	}

	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, st.URL+"/full-duplex-streamed/echo", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "video/mp4")
	resp, err := harness.NewTransport(harness.H1).RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sum := sha256.New()
	if _, err := io.CopyN(sum, resp.Body, size-unreadAtPause); err != nil {
		t.Fatalf("read before the pause: %v", err)
	}
	time.Sleep(3 * time.Second) // the reader stalls, as a starved process does
	n, err := io.Copy(sum, resp.Body)
	if err != nil || n != unreadAtPause || !bytes.Equal(sum.Sum(nil), sha256Of(body)) {
		t.Fatalf("after the pause: read %d more bytes (want %d), err %v, content equal %v",
			n, unreadAtPause, err, bytes.Equal(sum.Sum(nil), sha256Of(body)))
	}
	after, err := st.Admin.Stat(context.Background(), counter)
	if err != nil {
		t.Fatal(err)
	}
	if after != before {
		t.Errorf("Envoy closed %d connections on its delayed-close timer while a client paused", after-before)
	}
}

func sha256Of(b []byte) []byte {
	s := sha256.Sum256(b)
	return s[:]
}
