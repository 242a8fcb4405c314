package pipeline

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/bodystream/bodystream/stage"
)

func TestCheckAddsUp(t *testing.T) {
	tests := []struct {
		name    string
		steps   []stage.Spec
		chunks  []string
		wantOut int64
	}{
		{"no transform", nil, []string{"ab", "c"}, 3},
		{"one stage", []stage.Spec{upper()}, []string{"ab", "", "c"}, 3},
		{"stage that adds bytes", []stage.Spec{upper(), suffix("!!")}, []string{"abc"}, 5},
		{"empty body", []stage.Spec{upper(), suffix("!")}, nil, 1},
		{"large body", []stage.Spec{upper(), upper()}, []string{strings.Repeat("xy", 100_000), "z"}, 200_001},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			r, err := steps(tt.steps...).Start(t.Context(), newMessage(), nil, &out)
			if err != nil {
				t.Fatal(err)
			}
			var in int64
			for _, c := range tt.chunks {
				n, err := r.Write([]byte(c))
				if err != nil {
					t.Fatal(err)
				}
				in += int64(n)
			}
			if _, err := r.Close(); err != nil {
				t.Fatal(err)
			}
			if err := r.Check(); err != nil {
				t.Errorf("Check: %v", err)
			}
			if r.BytesIn() != in || r.BytesOut() != tt.wantOut || int64(out.Len()) != tt.wantOut {
				t.Errorf("in %d, out %d (buffer %d); want in %d, out %d", r.BytesIn(), r.BytesOut(), out.Len(), in, tt.wantOut)
			}
		})
	}
}

// TestCheckFindsLostBytes alters the counts a stage reported, as a stage that lost or
// invented bytes would, and expects Check to name it.
func TestCheckFindsLostBytes(t *testing.T) {
	tests := []struct {
		name   string
		tamper func(r *Run)
		want   string
	}{
		{"first stage read less than was written", func(r *Run) { r.counts[0].read-- }, "stage upper read 5 bytes, 6 were written into the pipeline"},
		{"second stage read less than the first wrote", func(r *Run) { r.counts[0].written++ }, "stage suffix read 6 bytes, 7 were written by stage upper"},
		{"output short of the last stage", func(r *Run) { r.out.n-- }, "7 bytes reached the output, 8 were written by stage suffix"},
		{"a stage that did not finish", func(r *Run) { r.counts[1].completed = false }, "stage suffix did not finish"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := steps(upper(), suffix("!!")).Start(t.Context(), newMessage(), nil, &bytes.Buffer{})
			if err != nil {
				t.Fatal(err)
			}
			r.Write([]byte("abcdef"))
			if _, err := r.Close(); err != nil {
				t.Fatal(err)
			}
			tt.tamper(r)
			err = r.Check()
			if !errors.Is(err, ErrAccounting) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Check: %v, want ErrAccounting with %q", err, tt.want)
			}
		})
	}
}

func TestCheckAfterFailedRun(t *testing.T) {
	boom := errors.New("boom")
	r, err := steps(failAfter(2, boom)).Start(t.Context(), newMessage(), nil, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	r.Write([]byte("abcdef"))
	r.Close()
	if err := r.Check(); !errors.Is(err, boom) {
		t.Errorf("Check after a failed run: %v, want the run's error", err)
	}
}
