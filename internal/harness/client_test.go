package harness

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/klauspost/compress/gzip"
)

// TestUpload sends a generated body in each framing and protocol to a server that
// answers with the body gzip-compressed and says how the request was framed.
func TestUpload(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Answer while the request streams in, as the echo does.
		http.NewResponseController(w).EnableFullDuplex()
		w.Header().Set("X-Framing", fmt.Sprintf("proto=%d length=%d te=%v", r.ProtoMajor, r.ContentLength, r.TransferEncoding))
		w.Header().Set("Content-Encoding", "gzip")
		zw := gzip.NewWriter(w)
		io.Copy(zw, r.Body)
		zw.Close()
	}))
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	srv.Config.Protocols = &protocols
	srv.Start()
	defer srv.Close()

	for _, tc := range []struct {
		proto   Protocol
		size    int64
		length  int64
		framing string
	}{
		{H1, 100_000, 100_000, "proto=1 length=100000 te=[]"},
		{H1, 100_000, -1, "proto=1 length=-1 te=[chunked]"},
		{H1, 0, 0, "proto=1 length=0 te=[]"},
		{H2, 100_000, 100_000, "proto=2 length=100000"},
		{H2, 100_000, -1, "proto=2 length=-1"},
	} {
		t.Run(fmt.Sprintf("%s/%d/%d", tc.proto, tc.size, tc.length), func(t *testing.T) {
			body, err := NewBody(BodyJSON, tc.size, 1, "")
			if err != nil {
				t.Fatal(err)
			}
			transport := NewTransport(tc.proto)
			defer transport.CloseIdleConnections()
			got, err := Upload(context.Background(), transport, Request{URL: srv.URL, Body: body, Length: tc.length})
			if err != nil {
				t.Fatal(err)
			}
			if framing := got.Header.Get("X-Framing"); got.Status != 200 || !strings.HasPrefix(framing, tc.framing) {
				t.Errorf("status %d, framing %q, want %q", got.Status, framing, tc.framing)
			}
			if err := got.Verify(body.Sent()); err != nil {
				t.Error(err)
			}
			if !got.EndedCleanly() || got.Encoding != "gzip" || int64(len(got.Head)) != min(tc.size, HeadSize) {
				t.Errorf("ended %v, encoding %q, head %d bytes", got.WireEnd, got.Encoding, len(got.Head))
			}
		})
	}
}

// TestUploadSeesAReset: a response cut short by the server is an error the client
// sees, and not a clean end.
func TestUploadSeesAReset(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "1000")
		w.Write([]byte("only part"))
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler)
	}))
	defer srv.Close()
	transport := NewTransport(H1)
	defer transport.CloseIdleConnections()
	got, err := Upload(context.Background(), transport, Request{URL: srv.URL, Body: strings.NewReader("x"), Length: 1})
	if err == nil || !strings.HasPrefix(err.Error(), "response:") || got.EndedCleanly() || got.Wire != 9 {
		t.Fatalf("err %v, end %v, wire %d", err, got.WireEnd, got.Wire)
	}
	if _, err := Upload(context.Background(), transport, Request{URL: "http://127.0.0.1:1", Length: -1, Body: strings.NewReader("x")}); err == nil || !strings.HasPrefix(err.Error(), "request:") {
		t.Fatalf("a refused connection: %v", err)
	}
}
