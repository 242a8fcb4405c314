package stage

import (
	"fmt"
	"slices"
	"sync"
)

// Kind is a kind of step that a configuration can name, such as "gzip".
type Kind struct {
	// Name is how the configuration names the kind: `pipelines: {p: [{NAME: {…}}]}`.
	Name string
	// Build returns a ready Spec for one configured step. decode fills the kind's
	// options struct from the step's YAML options (yaml struct tags; unknown fields
	// are refused) and leaves it untouched when the step has none, so Build decodes
	// into a struct holding the defaults. An error names the option, starting with
	// its yaml name: "level: must be between 1 and 9, got 12".
	Build func(decode func(options any) error) (Spec, error)
}

// MemoryEstimator is implemented by a Spec whose per-body state is worth counting in
// the server's memory budget (a codec's tables, a buffer). A Spec without it counts 0.
type MemoryEstimator interface {
	// MemoryEstimate is the most memory one body of m holds in this step. It must not
	// be low: the budget trusts it.
	MemoryEstimate(m *Message) int64
}

var (
	kindsMu sync.RWMutex
	kinds   = map[string]Kind{}
)

// Register makes a kind available to every configuration. Call it from an init
// function of the package that implements the kind; a binary that imports the package
// can then name the kind. It panics when the name is empty or taken, or Build is nil.
func Register(k Kind) {
	kindsMu.Lock()
	defer kindsMu.Unlock()
	switch _, taken := kinds[k.Name]; {
	case k.Name == "":
		panic("stage: Register with an empty name")
	case k.Build == nil:
		panic(fmt.Sprintf("stage: Register %q with no Build", k.Name))
	case taken:
		panic(fmt.Sprintf("stage: kind %q registered twice", k.Name))
	}
	kinds[k.Name] = k
}

// Lookup returns the registered kind of that name.
func Lookup(name string) (Kind, bool) {
	kindsMu.RLock()
	defer kindsMu.RUnlock()
	k, ok := kinds[name]
	return k, ok
}

// Kinds lists the registered kinds' names, sorted.
func Kinds() []string {
	kindsMu.RLock()
	defer kindsMu.RUnlock()
	names := make([]string, 0, len(kinds))
	for name := range kinds {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// EstimateMemory returns spec's estimate for m, or 0 when it keeps nothing worth
// counting.
func EstimateMemory(spec Spec, m *Message) int64 {
	if e, ok := spec.(MemoryEstimator); ok {
		return e.MemoryEstimate(m)
	}
	return 0
}
