package harness

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"time"
)

// Protocol is the HTTP version a client speaks to Envoy.
type Protocol string

const (
	H1 Protocol = "h1" // HTTP/1.1
	H2 Protocol = "h2" // cleartext HTTP/2 with prior knowledge (h2c)
)

// NewTransport returns a client transport that speaks only proto and leaves the
// response's content-encoding for ReadResponse to undo.
func NewTransport(proto Protocol) *http.Transport {
	var protocols http.Protocols
	switch proto {
	case H2:
		protocols.SetUnencryptedHTTP2(true)
	default:
		protocols.SetHTTP1(true)
	}
	return &http.Transport{
		Protocols:          &protocols,
		DisableCompression: true,
		DialContext:        (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		WriteBufferSize:    64 << 10,
		ReadBufferSize:     64 << 10,
	}
}

// Request is one upload.
type Request struct {
	URL string
	// Body is sent as it is read (a *Body hashes it on the way); Upload closes it if
	// it is an io.Closer.
	Body io.Reader
	// Length is the body's size, sent as content-length; -1 sends it without one
	// (chunked on HTTP/1.1, DATA frames up to END_STREAM on h2).
	Length  int64
	Header  http.Header
	Trailer http.Header // declared trailers; their values may be set until Body ends
	// Progress, if set, counts response body bytes as they arrive.
	Progress *atomic.Int64
}

// Result is an upload's response, read to its end.
type Result struct {
	Status          int
	ProtoMajor      int // 1 or 2: what Envoy answered in
	Header, Trailer http.Header
	Received
}

// Upload posts req over rt and reads the whole response, undoing its content-encoding
// while it hashes it. Any status is a result, not an error: the caller judges it. An
// error says whether the request failed ("request: …") or the response body did
// ("response: …"); in the latter case the Result holds what did arrive.
func Upload(ctx context.Context, rt http.RoundTripper, req Request) (Result, error) {
	body := req.Body
	if req.Length == 0 {
		// An empty body with a length: content-length 0, where a non-nil body of
		// length 0 would go out chunked.
		if c, ok := req.Body.(io.Closer); ok {
			c.Close()
		}
		body = http.NoBody
	}
	r, err := http.NewRequestWithContext(ctx, http.MethodPost, req.URL, body)
	if err != nil {
		return Result{}, fmt.Errorf("request: %w", err)
	}
	r.ContentLength = req.Length
	for k, v := range req.Header {
		r.Header[k] = v
	}
	r.Trailer = req.Trailer
	resp, err := rt.RoundTrip(r)
	if err != nil {
		return Result{}, fmt.Errorf("request: %w", err)
	}
	defer resp.Body.Close()
	res := Result{Status: resp.StatusCode, ProtoMajor: resp.ProtoMajor, Header: resp.Header}
	res.Received, err = ReadResponse(resp.Body, resp.Header.Get("Content-Encoding"), req.Progress)
	res.Trailer = resp.Trailer
	return res, err
}
