package bench

import (
	"strings"
	"testing"
)

// TestFileLimit: a load the hard limit on open files holds passes; one it cannot
// hold is refused before any stack starts, with the limit named.
func TestFileLimit(t *testing.T) {
	if err := raiseFileLimit(1); err != nil {
		t.Fatalf("one upload: %v", err)
	}
	err := raiseFileLimit(1 << 30)
	if err == nil || !strings.Contains(err.Error(), "ulimit -Hn") {
		t.Fatalf("a billion uploads: %v, want the hard limit named", err)
	}
}
