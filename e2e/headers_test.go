package e2e

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/bodystream/bodystream/internal/harness"
)

// headerEditsConfig gives the bundled envoy.yaml's routes, one per body mode, the
// same fixed header edits. The echo's sink reports request headers named
// x-bodystream-*, so the request edits use that prefix to be seen upstream.
const headerEditsConfig = `
routes:
  - {name: full-duplex-streamed, request: gzip, response: identity, request_headers: &up {set: {x-bodystream-greeting: hello-to-asm}, append: {x-bodystream-tag: b}, remove: [x-bodystream-secret]}, response_headers: &down {set: {x-ext-proc-header: hello-from-asm}, append: {x-bodystream-response-tag: b}}}
  - {name: streamed, request: identity, response: identity, request_headers: *up, response_headers: *down}
  - {name: buffered, request: gzip, response: identity, request_headers: *up, response_headers: *down}
  - {name: default, request: identity, response: identity, request_headers: *up, response_headers: *down}
`

// ownStack starts a stack of the test's own, with bodystream configured by
// configYAML, and stops it when the test ends.
func ownStack(t *testing.T, ctx context.Context, opts harness.Options, configYAML string) *harness.Stack {
	t.Helper()
	opts.Envoy = harness.RequireEnvoy(t)
	root, err := harness.FindRoot()
	if err != nil {
		t.Fatal(err)
	}
	opts.Root, opts.Dir = root, t.TempDir()
	configPath := filepath.Join(opts.Dir, "bodystream.yaml")
	if err := os.WriteFile(configPath, []byte(configYAML), 0o644); err != nil {
		t.Fatal(err)
	}
	opts.BodystreamArgs = append(opts.BodystreamArgs, "-config", configPath)
	st, err := harness.Start(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Stop() })
	return st
}

// TestE2EHeaderEdits: a route's fixed header edits reach the upstream (request) and
// the client (response) through the real Envoy in every body mode, including a
// request without a body, and Envoy rejects none of them.
func TestE2EHeaderEdits(t *testing.T) {
	if testing.Short() {
		t.Skip("starts its own stack")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	st := ownStack(t, ctx, harness.Options{}, headerEditsConfig)

	cases := []struct {
		name, path string
		size       int64
	}{
		{"FULL_DUPLEX_STREAMED", "/full-duplex-streamed/sink", 300 << 10},
		{"FULL_DUPLEX_STREAMED headers only", "/full-duplex-streamed/sink", 0},
		{"STREAMED", "/streamed/sink", 300 << 10},
		{"BUFFERED request, BUFFERED_PARTIAL response", "/buffered/sink", 300 << 10},
		{"NONE", "/sink", 300 << 10},
	}
	for _, tc := range cases {
		for _, proto := range []protocol{h1Length, h2} {
			t.Run(tc.name+"/"+proto.name, func(t *testing.T) {
				header := http.Header{}
				header.Set("x-bodystream-tag", "a")
				header.Set("x-bodystream-secret", "not for the upstream")
				got := send(t, st.URL+tc.path, proto, newBody(t, harness.BodyJSON, tc.size, 3), tc.size, header)
				if got.Status != http.StatusOK {
					t.Fatalf("status %d: %q", got.Status, got.Head)
				}
				seen := report(t, got).Headers
				if seen["x-bodystream-greeting"] != "hello-to-asm" {
					t.Errorf("upstream saw x-bodystream-greeting %q, want the set value hello-to-asm", seen["x-bodystream-greeting"])
				}
				if seen["x-bodystream-tag"] != "a, b" {
					t.Errorf("upstream saw x-bodystream-tag %q, want the client's value and the appended one: \"a, b\"", seen["x-bodystream-tag"])
				}
				if v, ok := seen["x-bodystream-secret"]; ok {
					t.Errorf("upstream saw x-bodystream-secret %q, which the route removes", v)
				}
				if v := got.Header.Get("x-ext-proc-header"); v != "hello-from-asm" {
					t.Errorf("client saw x-ext-proc-header %q, want hello-from-asm", v)
				}
				if v := got.Header.Values("x-bodystream-response-tag"); len(v) != 1 || v[0] != "b" {
					t.Errorf("client saw x-bodystream-response-tag %q, want the appended b", v)
				}
			})
		}
	}

	counters, err := st.Admin.Stats(ctx, `^http\.ingress\.ext_proc\.`)
	if err != nil {
		t.Fatal(err)
	}
	rejected, ok := counters["http.ingress.ext_proc.rejected_header_mutations"]
	if !ok {
		t.Fatalf("Envoy reports no rejected_header_mutations counter among %v", counters)
	}
	if rejected != 0 {
		t.Errorf("Envoy rejected %d header mutations", rejected)
	}
	if counters["http.ingress.ext_proc.streams_started"] < int64(len(cases)*2) {
		t.Errorf("Envoy started %d ext_proc streams for %d requests", counters["http.ingress.ext_proc.streams_started"], len(cases)*2)
	}
}
