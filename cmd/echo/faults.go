package main

import (
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"
)

// resetAfter reads the query's after=N body bytes, then aborts: net/http resets the
// HTTP/2 stream (or closes the HTTP/1.1 connection), as an upstream that crashes
// mid-body does. With echo=1 it first sends a 200 and those bytes back, so that the
// response breaks off after it started; without, there is no response at all.
func resetAfter(w http.ResponseWriter, r *http.Request) error {
	after, err := queryInt(r, "after", 0)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return nil
	}
	var dst io.Writer = io.Discard
	if r.URL.Query().Get("echo") == "1" {
		copyContentHeaders(w.Header(), r.Header)
		dst = w
	}
	n, err := io.CopyN(dst, r.Body, after)
	if dst == w {
		http.NewResponseController(w).Flush()
	}
	return &midResponseError{fmt.Errorf("reset as asked after %d body bytes (read error: %v)", n, err)}
}

// slowEcho echoes the body as echoStreamed does while reading it at most rate=N
// bytes a second, so that everything in front of it must hold back.
func slowEcho(w http.ResponseWriter, r *http.Request) error {
	rate, err := queryInt(r, "rate", 256<<10)
	if err != nil || rate <= 0 {
		http.Error(w, fmt.Sprintf("rate: want a positive number of bytes a second (%v)", err), http.StatusBadRequest)
		return nil
	}
	r.Body = &slowReader{ReadCloser: r.Body, rate: rate}
	return echoStreamed(w, r)
}

func queryInt(r *http.Request, name string, def int64) (int64, error) {
	s := r.URL.Query().Get(name)
	if s == "" {
		return def, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%s: want a number of bytes, got %q", name, s)
	}
	return n, nil
}

// slowReadTick is how often a slowReader reads: a tenth of its rate each time.
const slowReadTick = 100 * time.Millisecond

// slowReader reads at most rate bytes a second from the body it wraps.
type slowReader struct {
	io.ReadCloser
	rate int64
}

func (s *slowReader) Read(p []byte) (int, error) {
	time.Sleep(slowReadTick) // the slowness is this upstream's whole behaviour
	step := max(1, s.rate/int64(time.Second/slowReadTick))
	if int64(len(p)) > step {
		p = p[:step]
	}
	return s.ReadCloser.Read(p)
}
