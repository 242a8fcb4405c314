// Package atomicfile writes small files that another process polls for: the ready
// files the bodystream, echo and seed-server binaries write once they listen.
package atomicfile

import (
	"os"
	"path/filepath"
)

// Write writes data to a temporary file next to name and renames it into place, so
// that a reader polling for name never sees it partly written. Nothing is left
// behind when it fails.
func Write(name string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(name), filepath.Base(name)+".tmp*")
	if err != nil {
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	if err := os.Rename(tmp.Name(), name); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return nil
}
