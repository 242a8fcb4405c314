// Package ahocorasick finds many byte patterns at once in a stream, one byte at a time,
// with an Aho–Corasick automaton. The caller keeps the State between chunks, so a match
// that straddles two chunks is found without buffering.
//
// States are numbered so that those where some pattern ends come last: Advance needs
// one comparison per byte to know it must stop. In dense mode a state is its number
// times the table's stride, so the next state is table[state+class] with no
// multiplication.
package ahocorasick

import "iter"

// State is a state of an Automaton: what the bytes so far say about the patterns. The
// zero State is the start, before any byte.
type State int32

// Automaton is a compiled set of patterns. It is read-only once compiled, so any number
// of streams may share it.
type Automaton struct {
	matchFrom State // first state with outputs

	// Dense mode (table != nil): a full transition table over byte classes. Bytes that
	// occur in no pattern share one class, each other byte has its own.
	table   []State
	classes [256]uint8
	stride  State

	// Sparse mode: the trie's edges by state number, the failure links, and a full
	// table for the start state so that unmatched bytes cost one lookup.
	root      [256]State
	edgeStart []int32 // edges of state s: edgeStart[s]:edgeStart[s+1]
	edgeByte  []byte
	edgeNext  []State
	fail      []State

	// Outputs by state number: the patterns that are the state's whole string
	// (ascending), then those of dictLink's state, and so on: longest match first.
	outStart []int32
	out      []int32
	dictLink []int32 // nearest proper suffix state with outputs of its own, -1 none
}

// Dense reports whether a uses a full transition table rather than the trie's edges
// and failure links.
func (a *Automaton) Dense() bool { return a.table != nil }

// Advance steps from state s over p and stops right after the first byte that enters a
// state with outputs. It returns the state and the number of bytes consumed; the state
// has outputs exactly when Advance stopped for a match (HasOutputs).
func (a *Automaton) Advance(s State, p []byte) (State, int) {
	if a.table != nil {
		table, classes, matchFrom := a.table, &a.classes, a.matchFrom
		for i, b := range p {
			s = table[s+State(classes[b])]
			if s >= matchFrom {
				return s, i + 1
			}
		}
		return s, len(p)
	}
	for i, b := range p {
		s = a.nextSparse(s, b)
		if s >= a.matchFrom {
			return s, i + 1
		}
	}
	return s, len(p)
}

// HasOutputs reports whether some pattern ends at state s.
func (a *Automaton) HasOutputs(s State) bool { return s >= a.matchFrom }

func (a *Automaton) nextSparse(s State, b byte) State {
	for s != 0 {
		for e := a.edgeStart[s]; e < a.edgeStart[s+1]; e++ {
			if a.edgeByte[e] == b {
				return a.edgeNext[e]
			}
		}
		s = a.fail[s]
	}
	return a.root[b]
}

// Outputs yields the indexes of the patterns that end at state s: the longest first,
// and the same pattern given more than once in ascending index order.
func (a *Automaton) Outputs(s State) iter.Seq[int] {
	return func(yield func(int) bool) {
		num := int32(s)
		if a.table != nil {
			num = int32(s / a.stride)
		}
		for ; num >= 0; num = a.dictLink[num] {
			for _, p := range a.out[a.outStart[num]:a.outStart[num+1]] {
				if !yield(int(p)) {
					return
				}
			}
		}
	}
}
