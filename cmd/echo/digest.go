package main

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"strings"
	"sync"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// bodyDigest hashes a request body as the handler reads it: the bytes as they came
// and, for a gzip or zstd body, the bytes after decoding. With the way the body
// ended, a log line then says whether the upstream got exactly what the client sent,
// which is what a stress run's forensics compare (-digest).
type bodyDigest struct {
	raw     hash.Hash
	ended   string // "eof" once the body ended cleanly, else the read error; "" while open
	decoder *digestDecoder
}

func newBodyDigest(encoding string) *bodyDigest {
	d := &bodyDigest{raw: sha256.New()}
	switch e := strings.ToLower(strings.TrimSpace(encoding)); e {
	case "gzip", "zstd":
		d.decoder = startDigestDecoder(e)
	}
	return d
}

// read records what one Read of the body returned.
func (d *bodyDigest) read(p []byte, err error) {
	d.raw.Write(p)
	if d.decoder != nil && len(p) > 0 {
		d.decoder.feed(p)
	}
	switch {
	case d.ended != "":
	case err == io.EOF:
		d.ended = "eof"
	case err != nil:
		d.ended = err.Error()
	}
}

// attrs ends the decoding and describes the body for the log line.
func (d *bodyDigest) attrs() []any {
	ended := d.ended
	if ended == "" {
		ended = "not read to its end"
	}
	attrs := []any{"body_end", ended, "sha256", hex.EncodeToString(d.raw.Sum(nil))}
	if d.decoder != nil {
		n, sum, err := d.decoder.finish(d.ended == "eof")
		attrs = append(attrs, "decoded_bytes", n, "decoded_sha256", sum)
		if err != nil {
			attrs = append(attrs, "decode_err", err.Error())
		}
	}
	return attrs
}

// digestDecoder decodes in a goroutine of its own, fed through a pipe: gzip and
// zstd readers pull their input.
type digestDecoder struct {
	pw     *io.PipeWriter
	done   chan struct{}
	closed sync.Once
	n      int64
	sum    string
	err    error
}

func startDigestDecoder(encoding string) *digestDecoder {
	pr, pw := io.Pipe()
	d := &digestDecoder{pw: pw, done: make(chan struct{})}
	go func() {
		defer close(d.done)
		defer pr.Close() // a decoder that stops early must not block feed
		var src io.Reader
		switch encoding {
		case "gzip":
			zr, err := gzip.NewReader(pr)
			if err != nil {
				d.err = fmt.Errorf("gzip: %w", err)
				return
			}
			src = zr
		default:
			zr, err := zstd.NewReader(pr, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true))
			if err != nil {
				d.err = fmt.Errorf("zstd: %w", err)
				return
			}
			defer zr.Close()
			src = zr
		}
		h := sha256.New()
		d.n, d.err = io.Copy(h, src)
		d.sum = hex.EncodeToString(h.Sum(nil))
	}()
	return d
}

func (d *digestDecoder) feed(p []byte) {
	d.pw.Write(p) // an error means the decoder stopped; finish reports why
}

// finish ends the decoder's input, cleanly when the body ended cleanly, and waits.
// Only the first call decides how the input ended.
func (d *digestDecoder) finish(clean bool) (int64, string, error) {
	d.closed.Do(func() {
		if clean {
			d.pw.Close()
		} else {
			d.pw.CloseWithError(errors.New("request body did not end cleanly"))
		}
	})
	<-d.done
	return d.n, d.sum, d.err
}

// close ends the decoder if attrs did not: a handler that panicked never logs.
func (d *bodyDigest) close() {
	if d.decoder != nil {
		d.decoder.finish(false)
	}
}
