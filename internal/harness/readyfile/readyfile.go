// Package readyfile is the file a server writes once it listens, so that a harness in
// another process learns its addresses: bodystream, the echo upstream and the bench's
// seed server all write it with -ready-file, and the harness reads it. It is a package
// of its own so that the binaries link only this, not the test harness.
//
// The format is key=value lines:
//
//	addr=127.0.0.1:40123
//	metrics=127.0.0.1:40124
//
// addr is where the server serves (bodystream: gRPC); metrics is bodystream's metrics
// address, absent when it serves none.
package readyfile

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"time"

	"github.com/bodystream/bodystream/internal/atomicfile"
)

// Addrs are the addresses a server announces.
type Addrs struct {
	Addr    string // where the server serves
	Metrics string // bodystream's metrics address; empty when it has none
}

// Write writes a's lines to path at once: a reader polling for path never sees half
// of it.
func Write(path string, a Addrs) error {
	if a.Addr == "" {
		return errors.New("ready file: no address to announce")
	}
	text := "addr=" + a.Addr + "\n"
	if a.Metrics != "" {
		text += "metrics=" + a.Metrics + "\n"
	}
	if err := atomicfile.Write(path, []byte(text)); err != nil {
		return fmt.Errorf("ready file: %w", err)
	}
	return nil
}

// Parse reads the lines Write writes. Any other line is an error: a harness that
// misread a server's address would wait on the wrong port until it timed out.
func Parse(r io.Reader) (Addrs, error) {
	var a Addrs
	seen := map[string]bool{}
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		key, value, ok := strings.Cut(line, "=")
		if !ok {
			return Addrs{}, fmt.Errorf("line %d: %q is not key=value", n, line)
		}
		if seen[key] {
			return Addrs{}, fmt.Errorf("line %d: %s given twice", n, key)
		}
		seen[key] = true
		switch key {
		case "addr":
			a.Addr = value
		case "metrics":
			a.Metrics = value
		default:
			return Addrs{}, fmt.Errorf("line %d: unknown key %q", n, key)
		}
	}
	if err := sc.Err(); err != nil {
		return Addrs{}, err
	}
	if a.Addr == "" {
		return Addrs{}, errors.New("no addr line")
	}
	return a, nil
}

// read parses the ready file at path. While the server has not written it yet, the
// error is fs.ErrNotExist.
func read(path string) (Addrs, error) {
	f, err := os.Open(path)
	if err != nil {
		return Addrs{}, err
	}
	defer f.Close()
	a, err := Parse(f)
	if err != nil {
		return Addrs{}, fmt.Errorf("ready file %s: %w", path, err)
	}
	return a, nil
}

// pollInterval is how often Wait looks: a process in another address space offers
// nothing to wait on but its files.
const pollInterval = 5 * time.Millisecond

// Wait polls for the ready file at path until it is there, or until ctx ends; then
// it returns ctx's cause, so that a caller who cancels when the server exits says so.
func Wait(ctx context.Context, path string) (Addrs, error) {
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for {
		a, err := read(path)
		if !errors.Is(err, fs.ErrNotExist) {
			return a, err
		}
		select {
		case <-ctx.Done():
			return Addrs{}, context.Cause(ctx)
		case <-tick.C:
		}
	}
}
