package harness

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// recorder is a TB that notes how RequireEnvoy ended the test.
type recorder struct{ skipped, failed string }

func (r *recorder) Helper()                          {}
func (r *recorder) Skipf(format string, args ...any) { r.skipped = fmt.Sprintf(format, args...) }
func (r *recorder) Fatalf(format string, args ...any) {
	r.failed = fmt.Sprintf(format, args...)
}

func TestRequireEnvoy(t *testing.T) {
	fake := filepath.Join(t.TempDir(), "envoy")
	missing := filepath.Join(t.TempDir(), "none")
	if err := os.WriteFile(fake, nil, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, envoy, ci   string
		want, skip, fatal string
	}{
		{"found", fake, "", fake, "", ""},
		{"found under CI", fake, "true", fake, "", ""},
		{"missing: skip", missing, "", "", "no Envoy", ""},
		{"missing: skip unless CI is exactly true", missing, "1", "", "no Envoy", ""},
		{"missing under CI: fail", missing, "true", "", "", "CI=true requires Envoy"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("ENVOY", tc.envoy)
			t.Setenv("CI", tc.ci)
			var r recorder
			got := RequireEnvoy(&r)
			if got != tc.want || !has(r.skipped, tc.skip) || !has(r.failed, tc.fatal) {
				t.Errorf("got %q, skipped %q, failed %q; want %q, skip %q, fail %q", got, r.skipped, r.failed, tc.want, tc.skip, tc.fatal)
			}
		})
	}
}

// has reports whether s contains want, or is empty when want is.
func has(s, want string) bool {
	if want == "" {
		return s == ""
	}
	return strings.Contains(s, want)
}
