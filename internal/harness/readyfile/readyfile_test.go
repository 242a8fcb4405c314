package readyfile

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		name    string
		text    string
		want    Addrs
		wantErr string
	}{
		{"echo", "addr=127.0.0.1:1\n", Addrs{Addr: "127.0.0.1:1"}, ""},
		{"bodystream", "addr=127.0.0.1:1\nmetrics=127.0.0.1:2\n", Addrs{Addr: "127.0.0.1:1", Metrics: "127.0.0.1:2"}, ""},
		{"no final newline, blank lines", "\naddr=[::1]:1\n\n", Addrs{Addr: "[::1]:1"}, ""},
		{"metrics empty", "addr=a:1\nmetrics=\n", Addrs{Addr: "a:1"}, ""},
		{"empty", "", Addrs{}, "no addr line"},
		{"metrics only", "metrics=a:2\n", Addrs{}, "no addr line"},
		{"a bare address", "127.0.0.1:1\n", Addrs{}, "not key=value"},
		{"unknown key", "addr=a:1\ngrpc=a:1\n", Addrs{}, `unknown key "grpc"`},
		{"twice", "addr=a:1\naddr=a:2\n", Addrs{}, "addr given twice"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Parse(strings.NewReader(tc.text))
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("error %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("error %v, want one about %q", err, tc.wantErr)
			case got != tc.want:
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestWriteThenWait(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ready")
	want := Addrs{Addr: "127.0.0.1:1", Metrics: "127.0.0.1:2"}
	go func() {
		time.Sleep(20 * time.Millisecond)
		if err := Write(path, want); err != nil {
			t.Error(err)
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got, err := Wait(ctx, path)
	if err != nil || got != want {
		t.Fatalf("Wait: %+v, %v; want %+v", got, err, want)
	}
	if err := Write(path, Addrs{}); err == nil {
		t.Error("Write without an address succeeded")
	}
}

func TestWaitReturnsTheCause(t *testing.T) {
	exited := errors.New("server exited")
	ctx, cancel := context.WithCancelCause(context.Background())
	cancel(exited)
	if _, err := Wait(ctx, filepath.Join(t.TempDir(), "never")); !errors.Is(err, exited) {
		t.Fatalf("Wait: %v, want the cause", err)
	}
}
