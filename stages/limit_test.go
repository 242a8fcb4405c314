package stages_test

import (
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/bodystream/bodystream/stage"
	"github.com/bodystream/bodystream/stages"
)

// limitBuild builds the registered limit kind with max_bytes max.
func limitBuild(max int64) (stage.Spec, error) {
	return buildKind("limit", func(l *stages.Limit) { l.MaxBytes = max })
}

// limitPlan plans a limit of max bytes and returns its observer.
func limitPlan(t *testing.T, max int64) stage.Observer {
	t.Helper()
	l, err := limitBuild(max)
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	step, err := l.Plan(&stage.Message{}, nil)
	if err != nil {
		t.Fatalf("Plan: %v", err)
	}
	if step.Observer == nil || step.Transformer != nil || step.Edit != (stage.HeaderEdit{}) {
		t.Fatalf("Plan = %+v, want an observer and no edit", step)
	}
	return step.Observer
}

func TestLimitBuild(t *testing.T) {
	for _, tt := range []struct {
		max     int64
		wantErr bool
	}{{-1, true}, {0, true}, {1, false}, {1 << 40, false}} {
		l, err := limitBuild(tt.max)
		if tt.wantErr {
			if err == nil || !strings.HasPrefix(err.Error(), "max_bytes: ") {
				t.Errorf("max_bytes %d: Build error = %v, want one starting with %q", tt.max, err, "max_bytes: ")
			}
			continue
		}
		if err != nil {
			t.Errorf("max_bytes %d: Build: %v", tt.max, err)
			continue
		}
		if l.Name() != "limit" || l.PreviewSize(nil) != 0 {
			t.Errorf("max_bytes %d: Name, PreviewSize = %q, %d", tt.max, l.Name(), l.PreviewSize(nil))
		}
	}
	// The limit has no default: an unset max_bytes is refused.
	if _, err := buildKind[stages.Limit]("limit", nil); err == nil {
		t.Error("Build accepted a limit without max_bytes")
	}
}

func TestLimit(t *testing.T) {
	const max = 1000
	tests := []struct {
		name   string
		writes []int // sizes of successive writes
		over   bool  // the last write goes over
	}{
		{"nothing", nil, false},
		{"under", []int{999}, false},
		{"at", []int{1000}, false},
		{"over in one write", []int{1001}, true},
		{"at in small writes", limitSizes(10, 100), false},
		{"over by one byte in small writes", append(limitSizes(100, 10), 1), true},
		{"over in the middle of a write", []int{600, 600}, true},
		{"empty writes at the limit", []int{1000, 0, 0}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := limitPlan(t, max)
			buf := make([]byte, max+1)
			for i, n := range tt.writes {
				written, err := o.Write(buf[:n])
				last := i == len(tt.writes)-1
				if tt.over && last {
					if !errors.Is(err, stage.ErrBodyTooLarge) {
						t.Fatalf("write %d of %d bytes: error = %v, want ErrBodyTooLarge", i, n, err)
					}
					if !strings.Contains(err.Error(), strconv.Itoa(max)) {
						t.Errorf("error %q does not say the limit", err)
					}
					// The body stays refused.
					if _, err := o.Write(buf[:1]); !errors.Is(err, stage.ErrBodyTooLarge) {
						t.Errorf("write after the limit: error = %v, want ErrBodyTooLarge", err)
					}
					o.Abort()
					return
				}
				if err != nil || written != n {
					t.Fatalf("write %d of %d bytes = %d, %v", i, n, written, err)
				}
			}
			res, err := o.Finish()
			if err != nil {
				t.Fatalf("Finish: %v", err)
			}
			if res.Metadata != nil || res.Headers != nil || res.Trailers != nil {
				t.Errorf("Finish = %+v, want an empty result", res)
			}
		})
	}
}

func TestLimitBodiesAreIndependent(t *testing.T) {
	// Each Plan counts its own body.
	l, err := limitBuild(10)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		step, err := l.Plan(nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := step.Observer.Write(make([]byte, 10)); err != nil {
			t.Fatalf("body %d: %v", i, err)
		}
	}
}

func limitSizes(count, size int) []int {
	s := make([]int, count)
	for i := range s {
		s[i] = size
	}
	return s
}
