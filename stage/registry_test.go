package stage

import (
	"slices"
	"testing"
)

// fixedSpec is a spec with a memory estimate; noEstimate one without.
type fixedSpec struct{ estimate int64 }

func (fixedSpec) Name() string                        { return "fixed" }
func (fixedSpec) PreviewSize(*Message) int            { return 0 }
func (fixedSpec) Plan(*Message, []byte) (Step, error) { return Step{}, nil }
func (s fixedSpec) MemoryEstimate(*Message) int64     { return s.estimate }

type noEstimate struct{}

func (noEstimate) Name() string                        { return "none" }
func (noEstimate) PreviewSize(*Message) int            { return 0 }
func (noEstimate) Plan(*Message, []byte) (Step, error) { return Step{}, nil }

func buildFixed(func(any) error) (Spec, error) { return fixedSpec{estimate: 7}, nil }

func registerOrPanic(k Kind) (panicked bool) {
	defer func() { panicked = recover() != nil }()
	Register(k)
	return false
}

func TestRegister(t *testing.T) {
	if registerOrPanic(Kind{Name: "test-fixed", Build: buildFixed}) {
		t.Fatal("first registration panicked")
	}
	for name, k := range map[string]Kind{
		"twice":    {Name: "test-fixed", Build: buildFixed},
		"no name":  {Build: buildFixed},
		"no Build": {Name: "test-nobuild"},
	} {
		if !registerOrPanic(k) {
			t.Errorf("%s: Register did not panic", name)
		}
	}
	k, ok := Lookup("test-fixed")
	if !ok || k.Name != "test-fixed" {
		t.Fatalf("Lookup = %+v, %v", k, ok)
	}
	if _, ok := Lookup("test-nobuild"); ok {
		t.Error("a refused kind was registered")
	}
	if names := Kinds(); !slices.IsSorted(names) || !slices.Contains(names, "test-fixed") {
		t.Errorf("Kinds = %v, want sorted with test-fixed", names)
	}
	spec, err := k.Build(func(any) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	if got := EstimateMemory(spec, &Message{}); got != 7 {
		t.Errorf("EstimateMemory = %d, want the spec's 7", got)
	}
	if got := EstimateMemory(noEstimate{}, &Message{}); got != 0 {
		t.Errorf("EstimateMemory of a spec without an estimate = %d, want 0", got)
	}
}
