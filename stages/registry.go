package stages

import "github.com/bodystream/bodystream/stage"

// builder is a stage's options as the configuration writes them: Build checks them
// and returns the ready spec.
type builder interface {
	Build() (stage.Spec, error)
}

// register adds a kind to stage's registry: its options are decoded over the
// defaults newOptions returns, then built.
func register[O builder](name string, newOptions func() O) {
	stage.Register(stage.Kind{Name: name, Build: func(decode func(any) error) (stage.Spec, error) {
		options := newOptions()
		if err := decode(&options); err != nil {
			return nil, err
		}
		return options.Build()
	}})
}
