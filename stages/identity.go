package stages

func init() { Register("identity", func() Configurable { return new(Identity) }) }

// Identity passes the body on untouched: a pipeline of identity steps runs no stage
// at all. It has no options.
type Identity struct{}

func (*Identity) Name() string { return "identity" }

func (*Identity) PreviewSize(*Message) int { return 0 }

func (*Identity) Validate() error { return nil }

func (*Identity) Plan(*Message, []byte) (Step, error) { return Step{}, nil }
