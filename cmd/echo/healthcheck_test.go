package main

import (
	"bytes"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestHealthcheck(t *testing.T) {
	healthy := httptest.NewServer(http.HandlerFunc(healthz))
	defer healthy.Close()
	failing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "draining", http.StatusServiceUnavailable)
	}))
	defer failing.Close()
	// A port nothing listens on: taken, then released.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + ln.Addr().String() + "/healthz"
	ln.Close()

	cases := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{"healthy", []string{"-url", healthy.URL + "/healthz"}, ""},
		{"error status", []string{"-url", failing.URL + "/healthz"}, "503 Service Unavailable"},
		{"nothing listens", []string{"-url", closed}, "connection refused"},
		{"bad flag", []string{"-nope"}, "flag provided but not defined"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var stderr bytes.Buffer
			err := Healthcheck(t.Context(), tc.args, &stderr)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("Healthcheck: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Healthcheck error %v, want it to contain %q", err, tc.wantErr)
			}
		})
	}
}
