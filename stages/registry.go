package stages

import (
	"fmt"
	"sort"
	"sync"

	"github.com/bodystream/bodystream/stage"
)

// Configurable is a Spec read from the configuration file: a struct whose exported
// fields carry yaml tags, one kind per stage file.
type Configurable interface {
	stage.Spec
	// Validate fills in defaults and refuses a wrong value with an error that starts
	// with the field's yaml name, e.g. `level: must be between 1 and 9, got 12`.
	Validate() error
}

var (
	registryMu sync.RWMutex
	registry   = map[string]func() Configurable{}
)

// Register makes a kind of step available to the configuration under name.
// Stage files call it from init.
func Register(name string, newSpec func() Configurable) {
	registryMu.Lock()
	defer registryMu.Unlock()
	if _, dup := registry[name]; dup {
		panic(fmt.Sprintf("stages: kind %q registered twice", name))
	}
	registry[name] = newSpec
}

// NewSpec returns a zero spec of the named kind, ready to be decoded into.
func NewSpec(name string) (Configurable, bool) {
	registryMu.RLock()
	defer registryMu.RUnlock()
	f, ok := registry[name]
	if !ok {
		return nil, false
	}
	return f(), true
}

// Kinds lists the registered kinds, sorted.
func Kinds() []string {
	registryMu.RLock()
	defer registryMu.RUnlock()
	names := make([]string, 0, len(registry))
	for name := range registry {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}
