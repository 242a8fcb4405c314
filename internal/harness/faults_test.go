package harness

import (
	"strings"
	"testing"
)

func TestParseGauges(t *testing.T) {
	text := `# HELP go_goroutines Number of goroutines that currently exist.
# TYPE go_goroutines gauge
go_goroutines 42
bodystream_memory_budget_in_use_bytes 1.048576e+06
bodystream_streams_total{result="ok"} 7
bodystream_body_messages_total{direction="request",side="in"} 5
bodystream_streams_active 3
`
	got, err := ParseGauges(strings.NewReader(text), "go_goroutines", "bodystream_memory_budget_in_use_bytes", "bodystream_streams_active", `bodystream_body_messages_total{direction="request",side="in"}`)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{"go_goroutines": 42, "bodystream_memory_budget_in_use_bytes": 1 << 20, "bodystream_streams_active": 3, `bodystream_body_messages_total{direction="request",side="in"}`: 5}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
	if _, err := ParseGauges(strings.NewReader(text), "bodystream_missing"); err == nil {
		t.Error("a metric that is not exported parsed without an error")
	}
}

func TestSameAddresses(t *testing.T) {
	args := []string{"-listen", "127.0.0.1:0", "-admin-listen", "127.0.0.1:0", "-config", "x.yaml", "-ready-file", "f"}
	got := strings.Join(sameAddresses(args, "127.0.0.1:5000", "127.0.0.1:5001"), " ")
	want := "-listen 127.0.0.1:5000 -admin-listen 127.0.0.1:5001 -config x.yaml -ready-file f"
	if got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if args[1] != "127.0.0.1:0" {
		t.Error("sameAddresses changed its argument")
	}
}
