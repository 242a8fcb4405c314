package main

import (
	"bytes"
	"io"
	"net/http"
	"testing"
)

// TestReset: reset answers nothing: the client's request fails, over both protocols,
// and a bad query is a 400.
func TestReset(t *testing.T) {
	s := startEcho(t)
	for _, c := range []*http.Client{s.h1, s.h2c} {
		req := newRequest(t, t.Context(), s.url("/x/reset?after=1000"), randomBytes(100<<10), false)
		if resp, err := c.Do(req); err == nil {
			resp.Body.Close()
			t.Errorf("status %d, want the request to fail", resp.StatusCode)
		}
	}
	for _, c := range []*http.Client{s.h1, s.h2c} {
		req := newRequest(t, t.Context(), s.url("/x/reset?after=1000&echo=1"), randomBytes(100<<10), false)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || err == nil || len(got) > 1000 {
			t.Errorf("echo=1: status %d, %d bytes, %v: want 200, at most the 1000 bytes read, then an error", resp.StatusCode, len(got), err)
		}
	}
	resp, _ := do(t, s.h1, newRequest(t, t.Context(), s.url("/x/reset?after=-1"), nil, false))
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("after=-1: status %d, want 400", resp.StatusCode)
	}
}

// TestSlow: slow echoes the body as it is, at its rate, and refuses a rate of 0.
func TestSlow(t *testing.T) {
	s := startEcho(t)
	body := randomBytes(8 << 10)
	resp, got := do(t, s.h2c, newRequest(t, t.Context(), s.url("/x/slow?rate=1048576"), body, false))
	if resp.StatusCode != http.StatusOK || !bytes.Equal(got, body) {
		t.Errorf("status %d, %d bytes back of %d sent", resp.StatusCode, len(got), len(body))
	}
	resp, _ = do(t, s.h1, newRequest(t, t.Context(), s.url("/x/slow?rate=0"), nil, false))
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("rate=0: status %d, want 400", resp.StatusCode)
	}
}
