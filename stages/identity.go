package stages

import "github.com/bodystream/bodystream/stage"

func init() { register("identity", func() Identity { return Identity{} }) }

// Identity passes the body on untouched: a pipeline of identity steps runs no stage
// at all. It has no options.
type Identity struct{}

// Build returns the ready spec.
func (Identity) Build() (stage.Spec, error) { return identityPlanner{}, nil }

type identityPlanner struct{}

func (identityPlanner) Name() string { return "identity" }

func (identityPlanner) PreviewSize(*stage.Message) int { return 0 }

func (identityPlanner) Plan(*stage.Message, []byte) (stage.Step, error) { return stage.Step{}, nil }
