package stages

import (
	"fmt"

	"github.com/bodystream/bodystream/stage"
)

func init() { register("limit", func() Limit { return Limit{} }) }

// Limit refuses a body longer than MaxBytes. It counts the bytes at the point of the
// pipeline where it stands: before a decompress step it limits the body as received,
// after one the decoded body.
type Limit struct {
	// MaxBytes is the largest body allowed; it has no default.
	MaxBytes int64 `yaml:"max_bytes"`
}

// Build requires a positive MaxBytes.
func (l Limit) Build() (stage.Spec, error) {
	if l.MaxBytes <= 0 {
		return nil, fmt.Errorf("max_bytes: must be positive, got %d", l.MaxBytes)
	}
	return limitPlanner(l), nil
}

// limitPlanner is a built limit step.
type limitPlanner Limit

func (l limitPlanner) Name() string { return "limit" }

func (l limitPlanner) PreviewSize(*stage.Message) int { return 0 }

// Plan returns a fresh counter for the body.
func (l limitPlanner) Plan(*stage.Message, []byte) (stage.Step, error) {
	return stage.Step{Observer: &limitObserver{max: l.MaxBytes}}, nil
}

// limitObserver counts the bytes of one body.
type limitObserver struct {
	max   int64
	total int64
	err   error // set once the body went over max
}

// Write counts p and fails as soon as the total passes the limit; the bytes of the
// write that crosses it are refused as a whole.
func (o *limitObserver) Write(p []byte) (int, error) {
	if o.err != nil {
		return 0, o.err
	}
	o.total += int64(len(p))
	if o.total > o.max {
		o.err = fmt.Errorf("limit: %w: more than max_bytes %d", stage.ErrBodyTooLarge, o.max)
		return 0, o.err
	}
	return len(p), nil
}

// Finish reports nothing: a body that got this far is within the limit.
func (o *limitObserver) Finish() (stage.Result, error) { return stage.Result{}, o.err }

// Abort has nothing to release.
func (o *limitObserver) Abort() {}
