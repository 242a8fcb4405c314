package stages

import (
	"net/textproto"
	"testing"

	"github.com/bodystream/bodystream/stage"
)

func TestIdentityRunsNothing(t *testing.T) {
	spec, err := buildKind(t, "identity", noOptions)
	if err != nil {
		t.Fatal(err)
	}
	m := &stage.Message{Header: textproto.MIMEHeader{"Content-Type": {"text/plain"}}}
	step, err := spec.Plan(m, []byte("hello"))
	if err != nil || step != (stage.Step{}) {
		t.Errorf("Plan = %+v, %v; want an empty step", step, err)
	}
	if spec.Name() != "identity" || spec.PreviewSize(nil) != 0 {
		t.Errorf("Name() = %q, PreviewSize() = %d", spec.Name(), spec.PreviewSize(nil))
	}
}
