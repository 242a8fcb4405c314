package stages

import "github.com/bodystream/bodystream/stage"

func init() { Register("identity", func() Configurable { return new(Identity) }) }

// Identity passes the body on untouched: a pipeline of identity steps runs no stage
// at all. It has no options.
type Identity struct{}

func (*Identity) Name() string { return "identity" }

func (*Identity) PreviewSize(*stage.Message) int { return 0 }

func (*Identity) Validate() error { return nil }

func (*Identity) Plan(*stage.Message, []byte) (stage.Step, error) { return stage.Step{}, nil }
