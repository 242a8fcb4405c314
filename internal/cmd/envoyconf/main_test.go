package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/bodystream/bodystream/internal/harness"
)

// TestComposeFileIsGenerated fails when resources/envoy.compose.yaml is not what the
// generator makes of resources/envoy.yaml: one was edited without the other.
func TestComposeFileIsGenerated(t *testing.T) {
	root, err := harness.FindRoot()
	if err != nil {
		t.Fatal(err)
	}
	want, err := compose(root)
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(root, target))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s has drifted from %s: run `make %s`", target, source, target)
	}
}

func TestOnHost(t *testing.T) {
	for _, tc := range []struct{ host, addr, want string }{
		{"0.0.0.0", "127.0.0.1:9901", "0.0.0.0:9901"},
		{"echo", "127.0.0.1:18081", "echo:18081"},
		{"echo", "[::1]:18081", "echo:18081"},
		{"echo", "no port", ""},
	} {
		got, err := onHost(tc.host, tc.addr)
		if got != tc.want || (err != nil) != (tc.want == "") {
			t.Errorf("onHost(%q, %q) = %q, %v; want %q", tc.host, tc.addr, got, err, tc.want)
		}
	}
}
