package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// copyBufferSize is the one buffer a streaming request holds, whatever its body's size.
const copyBufferSize = 32 << 10

var copyBuffers = sync.Pool{New: func() any { return new([copyBufferSize]byte) }}

// reportedHeaderPrefix marks the request headers that sink reports back.
const reportedHeaderPrefix = "x-bodystream-"

// handler serves every route; the last path segment picks the behaviour.
type handler struct {
	buffered    bool
	maxBuffered int64
	verbose     bool
	digest      bool
	log         *slog.Logger
}

func newHandler(cfg config, stderr io.Writer) *handler {
	return &handler{
		buffered:    cfg.buffered,
		maxBuffered: cfg.maxBuffered,
		verbose:     cfg.verbose || cfg.digest,
		digest:      cfg.digest,
		log:         slog.New(slog.NewTextHandler(stderr, nil)),
	}
}

// A midResponseError is a failure after the response header went out. Nothing can be
// said to the client any more, but ending the response normally would pass a
// truncated echo off as a complete one, so the response is aborted instead.
type midResponseError struct{ err error }

func (e *midResponseError) Error() string { return e.err.Error() }
func (e *midResponseError) Unwrap() error { return e.err }

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var err error
	if h.verbose {
		err = h.serveLogged(w, r)
	} else {
		err = h.route(w, r)
		if err != nil {
			h.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "proto", r.Proto, "err", err)
		}
	}
	if _, ok := errors.AsType[*midResponseError](err); ok {
		// net/http resets the HTTP/2 stream or closes the HTTP/1.1 connection,
		// without logging a panic.
		panic(http.ErrAbortHandler)
	}
}

func (h *handler) route(w http.ResponseWriter, r *http.Request) error {
	switch lastSegment(r.URL.Path) {
	case "sink":
		return sink(w, r)
	case "healthz":
		healthz(w, r)
		return nil
	case "respond":
		return respond(w, r)
	case "reset":
		return resetAfter(w, r)
	case "slow":
		return slowEcho(w, r)
	default:
		if h.buffered {
			return h.echoBuffered(w, r)
		}
		return echoStreamed(w, r)
	}
}

func lastSegment(path string) string {
	return path[strings.LastIndexByte(path, '/')+1:]
}

func healthz(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "healthz answers GET and HEAD", http.StatusMethodNotAllowed)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	io.WriteString(w, "ok")
}

// echoStreamed writes each chunk of the request body back as soon as it is read.
func echoStreamed(w http.ResponseWriter, r *http.Request) error {
	rc := http.NewResponseController(w)
	// HTTP/1.1 otherwise stops the request body at the first response write; HTTP/2
	// is always full duplex.
	if err := rc.EnableFullDuplex(); err != nil {
		http.Error(w, "full duplex not supported", http.StatusInternalServerError)
		return fmt.Errorf("enable full duplex: %w", err)
	}
	copyContentHeaders(w.Header(), r.Header)
	// Declaring the trailers up front lets HTTP/1.1 choose chunked encoding even
	// for an empty body, where it would otherwise send Content-Length: 0.
	for name := range r.Trailer {
		w.Header().Add("Trailer", name)
	}

	// The response header goes out with the first chunk rather than before the
	// first read: a client that sent Expect: 100-continue gets its 100 from that read
	// instead of a final status that would tell it not to send the body.
	buf := copyBuffers.Get().(*[copyBufferSize]byte)
	defer copyBuffers.Put(buf)
	started := false
	for {
		n, readErr := r.Body.Read(buf[:])
		if n > 0 {
			started = true
			if _, err := w.Write(buf[:n]); err != nil {
				return &midResponseError{fmt.Errorf("write response: %w", err)}
			}
			if err := rc.Flush(); err != nil {
				return &midResponseError{fmt.Errorf("flush response: %w", err)}
			}
		}
		if readErr == io.EOF {
			break
		}
		if readErr != nil {
			err := fmt.Errorf("read request body: %w", readErr)
			if started {
				return &midResponseError{err}
			}
			w.Header().Del("Trailer")
			http.Error(w, err.Error(), http.StatusBadRequest)
			return err
		}
	}
	echoTrailers(w.Header(), r.Trailer)
	return nil
}

// echoBuffered reads the whole body, up to h.maxBuffered, and then answers with it.
func (h *handler) echoBuffered(w http.ResponseWriter, r *http.Request) error {
	if r.ContentLength > h.maxBuffered {
		h.refuseTooLarge(w)
		return nil
	}
	var body bytes.Buffer
	if r.ContentLength > 0 {
		body.Grow(int(r.ContentLength))
	}
	if _, err := body.ReadFrom(http.MaxBytesReader(w, r.Body, h.maxBuffered)); err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			h.refuseTooLarge(w)
			return nil
		}
		err = fmt.Errorf("read request body: %w", err)
		http.Error(w, err.Error(), http.StatusBadRequest)
		return err
	}
	copyContentHeaders(w.Header(), r.Header)
	w.Header().Set("Content-Length", strconv.Itoa(body.Len()))
	if _, err := w.Write(body.Bytes()); err != nil {
		return &midResponseError{fmt.Errorf("write response: %w", err)}
	}
	// HTTP/2 sends these after the body; HTTP/1.1 cannot with a Content-Length.
	echoTrailers(w.Header(), r.Trailer)
	return nil
}

func (h *handler) refuseTooLarge(w http.ResponseWriter) {
	msg := fmt.Sprintf("request body larger than -max-buffered (%d bytes)", h.maxBuffered)
	http.Error(w, msg, http.StatusRequestEntityTooLarge)
}

// copyContentHeaders gives the response the request's Content-Type and Content-Encoding.
func copyContentHeaders(dst, src http.Header) {
	for _, name := range []string{"Content-Type", "Content-Encoding"} {
		if values, ok := src[name]; ok {
			dst[name] = slices.Clone(values)
		}
	}
	if _, ok := dst["Content-Type"]; !ok {
		// A nil value stops net/http from sniffing one: an echo must not add a type
		// the request did not have.
		dst["Content-Type"] = nil
	}
}

// echoTrailers sets the request's trailers, read by now, as the response's trailers.
func echoTrailers(dst, trailer http.Header) {
	for name, values := range trailer {
		if len(values) > 0 {
			dst[http.TrailerPrefix+name] = slices.Clone(values)
		}
	}
}

// sinkReport is sink's answer.
type sinkReport struct {
	Bytes           int64             `json:"bytes"`
	SHA256          string            `json:"sha256"`
	ContentEncoding string            `json:"content_encoding"`
	ContentType     string            `json:"content_type"`
	Trailers        map[string]string `json:"trailers"`
	Headers         map[string]string `json:"headers"`
}

// sink reads the body through a hash and describes what arrived.
func sink(w http.ResponseWriter, r *http.Request) error {
	sum := sha256.New()
	buf := copyBuffers.Get().(*[copyBufferSize]byte)
	n, err := io.CopyBuffer(sum, r.Body, buf[:])
	copyBuffers.Put(buf)
	if err != nil {
		err = fmt.Errorf("read request body: %w", err)
		http.Error(w, err.Error(), http.StatusBadRequest)
		return err
	}

	report := sinkReport{
		Bytes:           n,
		SHA256:          hex.EncodeToString(sum.Sum(nil)),
		ContentEncoding: r.Header.Get("Content-Encoding"),
		ContentType:     r.Header.Get("Content-Type"),
		Trailers:        make(map[string]string, len(r.Trailer)),
		Headers:         make(map[string]string),
	}
	for name, values := range r.Trailer {
		if len(values) > 0 {
			report.Trailers[strings.ToLower(name)] = strings.Join(values, ", ")
		}
	}
	for name, values := range r.Header {
		if lower := strings.ToLower(name); strings.HasPrefix(lower, reportedHeaderPrefix) {
			report.Headers[lower] = strings.Join(values, ", ")
		}
	}
	answer, err := json.Marshal(report)
	if err != nil {
		err = fmt.Errorf("encode sink report: %w", err)
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(answer)))
	if _, err := w.Write(answer); err != nil {
		return &midResponseError{fmt.Errorf("write response: %w", err)}
	}
	return nil
}

// serveLogged routes r and logs one line about it; only -v pays for the counting.
func (h *handler) serveLogged(w http.ResponseWriter, r *http.Request) error {
	start := time.Now()
	body := &countingReader{ReadCloser: r.Body}
	if h.digest {
		body.digest = newBodyDigest(r.Header.Get("Content-Encoding"))
		defer body.digest.close()
	}
	r.Body = body
	rec := &responseRecorder{ResponseWriter: w}
	err := h.route(rec, r)
	if rec.status == 0 {
		rec.status = http.StatusOK // what net/http sends for a handler that wrote nothing
	}
	attrs := []any{
		"method", r.Method,
		"path", r.URL.Path,
		"proto", r.Proto,
		"status", rec.status,
		"bytes_in", body.n,
		"bytes_out", rec.n,
		"duration", time.Since(start),
	}
	if h.digest {
		attrs = append(attrs, "request_id", r.Header.Get("X-Request-Id"), "content_encoding", r.Header.Get("Content-Encoding"))
		attrs = append(attrs, body.digest.attrs()...)
	}
	if err != nil {
		h.log.Error("request failed", append(attrs, "err", err)...)
	} else {
		h.log.Info("request", attrs...)
	}
	return err
}

type countingReader struct {
	io.ReadCloser
	n      int64
	digest *bodyDigest // nil without -digest
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.ReadCloser.Read(p)
	c.n += int64(n)
	if c.digest != nil {
		c.digest.read(p[:n], err)
	}
	return n, err
}

// responseRecorder notes the status and body size; Unwrap lets
// http.ResponseController reach the server's writer to flush and enable full duplex.
type responseRecorder struct {
	http.ResponseWriter
	status int
	n      int64
}

func (r *responseRecorder) WriteHeader(status int) {
	if r.status == 0 {
		r.status = status
	}
	r.ResponseWriter.WriteHeader(status)
}

func (r *responseRecorder) Write(p []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	n, err := r.ResponseWriter.Write(p)
	r.n += int64(n)
	return n, err
}

func (r *responseRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }
