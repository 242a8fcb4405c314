package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dustin/go-humanize"

	"github.com/bodystream/bodystream/internal/harness"
)

// envoyReceiveLimit is Envoy's max_receive_message_length in TestE2EMaxReceiveMessage:
// bodystream's default chunk_size, which bounds the whole message.
const envoyReceiveLimit = 64 << 10

// TestE2EMaxReceiveMessage runs a second Envoy whose ext_proc gRPC client refuses any
// message over 64 KiB (max_receive_message_length: 65536, bodystream's default
// chunk_size) against the shared stack's bodystream: every body comes back byte-exact
// in FULL_DUPLEX_STREAMED, STREAMED and BUFFERED. A message over the limit would fail
// the side stream with gRPC status 8 and the request with a 500.
//
// In STREAMED and BUFFERED a transformed body's reply carries what the pipeline made
// of Envoy's chunk or of the whole body, which the chunk size cannot bound: gzip of
// random bytes in a 64 KiB STREAMED chunk is a little more than 64 KiB. The random
// bodies there are sent as video/mp4, which gzip leaves alone (the replies then carry
// no body), and the BUFFERED JSON is small enough that gzip shrinks it under the limit.
func TestE2EMaxReceiveMessage(t *testing.T) {
	s := needStack(t)
	limited := startLimitedEnvoy(t, s)
	cases := []struct {
		route string
		kind  harness.BodyKind
		sizes []int64
		typ   string // the upload's content-type, if any
	}{
		{"full-duplex-streamed", harness.BodyRandom, []int64{1, 100 << 10, 8 << 20}, ""},
		{"full-duplex-streamed", harness.BodyJSON, []int64{100 << 10, 8 << 20}, ""},
		{"streamed", harness.BodyRandom, []int64{100 << 10, 8 << 20}, "video/mp4"},
		{"streamed", harness.BodyJSON, []int64{100 << 10, 8 << 20}, ""},
		{"buffered", harness.BodyRandom, []int64{1 << 20}, "video/mp4"},
		{"buffered", harness.BodyJSON, []int64{100 << 10}, ""},
	}
	for _, tc := range cases {
		for _, size := range tc.sizes {
			for _, proto := range []protocol{h1Length, h2} {
				t.Run(fmt.Sprintf("%s/%s/%s/%s", tc.route, humanize.IBytes(uint64(size)), tc.kind, proto.name), func(t *testing.T) {
					header := http.Header{}
					if tc.typ != "" {
						header.Set("Content-Type", tc.typ)
					}
					sent := newBody(t, tc.kind, size, uint64(size))
					got := send(t, limited.URL+"/"+tc.route+"/echo", proto, sent, size, header)
					if got.Status != http.StatusOK {
						t.Fatalf("status %d: %q", got.Status, got.Head)
					}
					if err := got.Verify(sent.Sent()); err != nil {
						t.Fatalf("%v (content-encoding %q)", err, got.Encoding)
					}
				})
			}
		}
	}
	// The side streams ended well: none failed on a message over the limit.
	if n := envoyStat(t, limited, "http.ingress.ext_proc.streams_failed"); n != 0 {
		t.Errorf("Envoy counted %d failed ext_proc streams", n)
	}
}

// startLimitedEnvoy starts an Envoy (and an echo) from resources/envoy.yaml with
// max_receive_message_length on its ext_proc client, talking to s's bodystream.
func startLimitedEnvoy(t *testing.T, s *harness.Stack) *harness.Stack {
	t.Helper()
	root, err := harness.FindRoot()
	if err != nil {
		t.Fatal(err)
	}
	src, err := os.ReadFile(filepath.Join(root, "resources", "envoy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	const client = "envoy_grpc: {cluster_name: bodystream}"
	if strings.Count(string(src), client) != 1 {
		t.Fatalf("resources/envoy.yaml: want one %q to add the limit to", client)
	}
	limitedSrc := strings.Replace(string(src), client,
		fmt.Sprintf("envoy_grpc: {cluster_name: bodystream, max_receive_message_length: %d}", envoyReceiveLimit), 1)
	cfg, err := harness.ParseEnvoyConfig([]byte(limitedSrc))
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.SetAddresses(harness.Addresses{Clusters: map[string]string{"bodystream": s.BodystreamAddr}}); err != nil {
		t.Fatal(err)
	}
	out, err := cfg.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	configPath := filepath.Join(dir, "envoy-limited.yaml")
	if err := os.WriteFile(configPath, out, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// The shared stack's binaries; only its bodystream is shared.
	limited, err := harness.Start(ctx, harness.Options{Root: root, BinDir: s.Dir, Dir: dir, EnvoyConfig: configPath, NoBodystream: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := limited.Stop(); err != nil {
			t.Errorf("stop the limited Envoy: %v", err)
		}
	})
	return limited
}
