package atomicfile

import (
	"os"
	"path/filepath"
	"testing"
)

func TestWrite(t *testing.T) {
	dir := t.TempDir()
	name := filepath.Join(dir, "ready")
	for _, text := range []string{"addr=127.0.0.1:1\n", "replaced"} {
		if err := Write(name, []byte(text)); err != nil {
			t.Fatal(err)
		}
		if got, _ := os.ReadFile(name); string(got) != text {
			t.Fatalf("read %q, want %q", got, text)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Fatalf("dir holds %d entries, want only the file", len(entries))
	}
	if err := Write(filepath.Join(dir, "missing", "ready"), []byte("x")); err == nil {
		t.Fatal("write into a missing directory succeeded")
	}
}
