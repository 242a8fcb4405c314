package server

import "sync"

// replyBuffer gathers a pipeline's output for protocols that answer each input chunk
// with exactly one reply (STREAMED) or one reply in all (BUFFERED): take returns all
// the output gathered since the last take. Writes never block, so the pipeline cannot
// deadlock against the reply that would drain it; what it holds is bounded by what
// one input chunk can expand to, which the stages' limits cap.
type replyBuffer struct {
	mu       sync.Mutex
	gathered []byte
	// discard drops the output when Envoy forwards its own copy of the body (an
	// identity pipeline). It is set once, after the pipeline started and before
	// anything writes: an identity pipeline runs no stage goroutine.
	discard bool
	// taken counts the bytes the replies carried, for checkReplies.
	taken int64
	// room is how much output the reservation covers (BUFFERED), set with grow before
	// anything writes. Output beyond it first asks grow for more; grow's error fails
	// the write. A nil grow: no bound (STREAMED holds one chunk's output).
	room int
	grow func(more int) (int, error)
}

func (r *replyBuffer) Write(p []byte) (int, error) {
	if r.discard {
		return len(p), nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if over := len(r.gathered) + len(p) - r.room; r.grow != nil && over > 0 {
		granted, err := r.grow(over)
		if err != nil {
			return 0, err
		}
		r.room += granted
	}
	r.gathered = append(r.gathered, p...)
	return len(p), nil
}

// take returns the gathered output for one reply (nil when none) and starts a new
// gathering.
func (r *replyBuffer) take() []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.gathered
	r.gathered = nil
	r.taken += int64(len(out))
	if len(out) == 0 {
		return nil
	}
	return out
}
