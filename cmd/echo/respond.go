package main

import (
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/bodystream/bodystream/internal/respondbody"
)

// maxRespondSize bounds what a respond query can make the echo generate.
const maxRespondSize = 64 << 20

// respond answers with the response its query describes, for tests of what a proxy
// does with a given response, whatever the request's method and body:
//   - size=N: N bytes of respond.Body (0 by default);
//   - fill=random: random bytes rather than text;
//   - status=S: the status (200 by default); 1xx and 204/304 send no body;
//   - header=Name:Value, repeatable: a response header (content-type, etag,
//     cache-control, vary, content-encoding, ...);
//   - chunked=1: no content-length; the body goes out after the header, in chunks
//     on HTTP/1.1.
//
// A HEAD request gets the same headers, content-length included, and no body.
func respond(w http.ResponseWriter, r *http.Request) error {
	if _, err := io.Copy(io.Discard, r.Body); err != nil {
		return fmt.Errorf("read request body: %w", err)
	}
	q := r.URL.Query()
	size, status := 0, http.StatusOK
	var err error
	if s := q.Get("size"); s != "" {
		if size, err = strconv.Atoi(s); err != nil || size < 0 || size > maxRespondSize {
			http.Error(w, fmt.Sprintf("size: want 0 to %d, got %q", maxRespondSize, s), http.StatusBadRequest)
			return nil
		}
	}
	if s := q.Get("status"); s != "" {
		if status, err = strconv.Atoi(s); err != nil || status < 100 || status > 599 {
			http.Error(w, fmt.Sprintf("status: want 100 to 599, got %q", s), http.StatusBadRequest)
			return nil
		}
	}
	for _, h := range q["header"] {
		name, value, ok := strings.Cut(h, ":")
		if !ok || strings.TrimSpace(name) == "" {
			http.Error(w, fmt.Sprintf("header: want Name:Value, got %q", h), http.StatusBadRequest)
			return nil
		}
		w.Header().Add(strings.TrimSpace(name), strings.TrimSpace(value))
	}
	hasBody := status >= 200 && status != http.StatusNoContent && status != http.StatusNotModified
	chunked := q.Get("chunked") == "1"
	if hasBody && !chunked {
		w.Header().Set("Content-Length", strconv.Itoa(size))
	}
	w.WriteHeader(status)
	if !hasBody || r.Method == http.MethodHead {
		return nil
	}
	if chunked {
		if err := http.NewResponseController(w).Flush(); err != nil {
			return &midResponseError{fmt.Errorf("flush header: %w", err)}
		}
	}
	if _, err := w.Write(respondbody.Body(size, q.Get("fill") == "random")); err != nil {
		return &midResponseError{fmt.Errorf("write body: %w", err)}
	}
	return nil
}
