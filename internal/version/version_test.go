package version

import (
	"runtime"
	"strings"
	"testing"
)

func TestLinkTimeValuesWin(t *testing.T) {
	defer func(v, c string) { Version, Commit = v, c }(Version, Commit)
	Version, Commit = "v9.9.9", "abc123"
	got := Get()
	if got.Version != "v9.9.9" || got.Commit != "abc123" || got.GoVersion != runtime.Version() {
		t.Fatalf("Get() = %+v, want the link-time version and commit", got)
	}
	if s := got.String(); !strings.Contains(s, "v9.9.9") || !strings.Contains(s, "abc123") {
		t.Fatalf("String() = %q, want version and commit in it", s)
	}
}

func TestNeverEmpty(t *testing.T) {
	got := Get()
	if got.Version == "" || got.Commit == "" || got.GoVersion == "" {
		t.Fatalf("Get() = %+v, want every part filled", got)
	}
}
