package stages

import (
	"strings"
	"testing"

	"go.uber.org/goleak"
	"go.yaml.in/yaml/v3"

	"github.com/bodystream/bodystream/stage"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// built returns the spec options build to, with edit applied to them first; it fails
// the test when Build refuses them.
func built[O builder](t testing.TB, options O, edit func(*O)) stage.Spec {
	t.Helper()
	if edit != nil {
		edit(&options)
	}
	spec, err := options.Build()
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	return spec
}

// buildKind builds the registered kind name as a configuration would, with decode
// filling its options.
func buildKind(t testing.TB, name string, decode func(any) error) (stage.Spec, error) {
	t.Helper()
	kind, ok := stage.Lookup(name)
	if !ok {
		t.Fatalf("kind %q is not registered", name)
	}
	return kind.Build(decode)
}

// yamlOptions decodes doc into a kind's options the way the configuration does:
// unknown fields are refused.
func yamlOptions(doc string) func(any) error {
	return func(options any) error {
		dec := yaml.NewDecoder(strings.NewReader(doc))
		dec.KnownFields(true)
		return dec.Decode(options)
	}
}

// noOptions leaves a kind's options at their defaults, as a step written without
// options does.
func noOptions(any) error { return nil }
