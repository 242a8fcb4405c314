package e2e

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bodystream/bodystream/internal/harness"
)

// customStageConfig routes the bundled envoy.yaml's full-duplex-streamed route
// through the example's redactor, behind a decompress step.
const customStageConfig = `
pipelines:
  redacted:
    - decompress: {encoding: auto}
    - redact: {keys: [password, ssn]}
routes:
  - {name: full-duplex-streamed, request: redacted, response: identity}
`

// TestE2ECustomStage builds examples/customstage, a bodystream binary with a stage
// kind of its own module, and runs it behind the real Envoy in bodystream's place:
// JSON lines lose their password and ssn on their way to the upstream, whole and
// gzip-compressed uploads alike, and a line that is not JSON gets 400.
func TestE2ECustomStage(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the example and starts its own stack")
	}
	harness.RequireEnvoy(t)
	root, err := harness.FindRoot()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	bin := filepath.Join(t.TempDir(), "bin")
	if err := harness.Build(ctx, root, bin, false); err != nil {
		t.Fatal(err)
	}
	// The example's binary takes bodystream's place.
	build := exec.CommandContext(ctx, "go", "build", "-o", filepath.Join(bin, "bodystream"), ".")
	build.Dir = filepath.Join(root, "examples", "customstage")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the example: %v\n%s", err, out)
	}
	st := ownStack(t, ctx, harness.Options{BinDir: bin}, customStageConfig)

	// Enough lines to cross many body chunks, each with the members to remove.
	var in, want bytes.Buffer
	for i := range 40_000 {
		fmt.Fprintf(&in, `{"id":%d,"password":"secret-%d","user":"u%d","ssn":"078-05-%04d","note":"keep me"}`+"\n", i, i, i, i%10000)
		fmt.Fprintf(&want, `{"id":%d,"user":"u%d","note":"keep me"}`+"\n", i, i)
	}
	var zipped bytes.Buffer
	zw := gzip.NewWriter(&zipped)
	zw.Write(in.Bytes())
	zw.Close()

	post := func(body []byte, encoding string) (int, []byte) {
		t.Helper()
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, st.URL+"/full-duplex-streamed/echo", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/x-ndjson")
		if encoding != "" {
			req.Header.Set("Content-Encoding", encoding)
		}
		resp, err := harness.NewTransport(harness.H1).RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		got, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("read the response: %v", err)
		}
		return resp.StatusCode, got
	}
	for _, tc := range []struct {
		name, encoding string
		body           []byte
	}{
		{"plain", "", in.Bytes()},
		{"gzip", "gzip", zipped.Bytes()},
	} {
		status, got := post(tc.body, tc.encoding)
		if status != http.StatusOK || !bytes.Equal(got, want.Bytes()) {
			t.Errorf("%s: status %d, %d bytes back; want 200 and the %d redacted bytes (first line %q)",
				tc.name, status, len(got), want.Len(), strings.SplitN(string(got), "\n", 2)[0])
		}
	}
	if status, got := post([]byte(`{"user":"ann"}`+"\n"+"password=hunter2\n"), ""); status != http.StatusBadRequest {
		t.Errorf("a line that is not JSON: status %d (%q), want 400", status, got)
	}
}
