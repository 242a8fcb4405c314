package bench

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/bodystream/bodystream/internal/harness"
)

// TestStressClientClassifies: against a server that echoes, drops the last byte with
// a clean end, or hangs up mid-body, the client must say ok, bad and failed.
func TestStressClientClassifies(t *testing.T) {
	tests := []struct {
		name    string
		handler http.HandlerFunc
		want    string
	}{
		{"whole echo", func(w http.ResponseWriter, r *http.Request) {
			body, _ := io.ReadAll(r.Body) // HTTP/1.1 handlers read before they answer
			w.Write(body)
		}, outcomeOK},
		{"short with a clean end", func(w http.ResponseWriter, r *http.Request) {
			body, _ := io.ReadAll(r.Body)
			w.Write(body[:len(body)-1])
		}, outcomeBad},
		{"one byte changed", func(w http.ResponseWriter, r *http.Request) {
			body, _ := io.ReadAll(r.Body)
			body[len(body)/2] ^= 1
			w.Write(body)
		}, outcomeBad},
		{"hung up mid-body", func(w http.ResponseWriter, r *http.Request) {
			body, _ := io.ReadAll(r.Body)
			w.Write(body[:len(body)/2])
			w.(http.Flusher).Flush()
			panic(http.ErrAbortHandler)
		}, outcomeFailed},
		{"error status", func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "no", http.StatusServiceUnavailable)
		}, outcomeFailed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(tt.handler)
			defer srv.Close()
			c := newStressClient(srv.URL)
			defer c.close()
			u := c.do(t.Context(), stressPlan{ID: "t", Mode: "fds", Codec: "identity", Protocol: harness.H1,
				Framing: "length", Kind: harness.BodyRandom, Size: 100_000, Seed: 3})
			if u.Outcome != tt.want {
				t.Errorf("outcome %s (%s), want %s", u.Outcome, u.Err, tt.want)
			}
			if tt.want == outcomeBad && !strings.Contains(u.Err, "ended cleanly") {
				t.Errorf("a bad upload's error %q does not say the body ended cleanly", u.Err)
			}
		})
	}
}

// TestCutReader: the client's hang-up cuts a body only where more of it follows; one
// that ends at the cut point was read whole.
func TestCutReader(t *testing.T) {
	for _, tc := range []struct {
		left    int64
		want    string
		wantCut bool
	}{
		{2, "ab", true},
		{3, "abc", false},
		{5, "abc", false},
		{0, "", true},
	} {
		cut := false
		r := &cutReader{r: strings.NewReader("abc"), left: tc.left, cut: func() { cut = true }}
		got, err := io.ReadAll(r)
		if string(got) != tc.want || cut != tc.wantCut || (err != nil) != tc.wantCut {
			t.Errorf("left %d: read %q, cut %v, err %v; want %q, cut %v", tc.left, got, cut, err, tc.want, tc.wantCut)
		}
	}
}
