package ahocorasick

// Compile builds the automaton of patterns, whose outputs are indexes into patterns. It
// is dense when its transition table (states × byte classes entries, 4 bytes each) has
// at most denseLimit entries, and sparse otherwise: about 15 bytes per state, at the
// cost of following failure links on a mismatch. Compile panics on an empty pattern,
// which would match before every byte.
func Compile(patterns [][]byte, denseLimit int) *Automaton {
	// The trie, as first-child/next-sibling lists; state 0 is the root.
	firstChild := []int32{-1}
	nextSibling := []int32{-1}
	label := []byte{0}
	var rootChild [256]int32 // 0: none
	own := map[int32][]int32{}
	child := func(s int32, b byte) int32 {
		if s == 0 {
			if c := rootChild[b]; c != 0 {
				return c
			}
			return -1
		}
		for c := firstChild[s]; c >= 0; c = nextSibling[c] {
			if label[c] == b {
				return c
			}
		}
		return -1
	}
	used := [256]bool{}
	for i, p := range patterns {
		if len(p) == 0 {
			panic("ahocorasick: empty pattern")
		}
		s := int32(0)
		for _, b := range p {
			used[b] = true
			c := child(s, b)
			if c < 0 {
				c = int32(len(label))
				label = append(label, b)
				firstChild = append(firstChild, -1)
				nextSibling = append(nextSibling, firstChild[s])
				firstChild[s] = c
				if s == 0 {
					rootChild[b] = c
				}
			}
			s = c
		}
		own[s] = append(own[s], int32(i))
	}
	n := len(label)

	// Failure and dictionary links, breadth first so that a state's failure target
	// (shallower) is done before it.
	fail := make([]int32, n)
	dict := make([]int32, n)
	dict[0] = -1
	order := make([]int32, 0, n)
	order = append(order, 0)
	for head := 0; head < len(order); head++ {
		u := order[head]
		for c := firstChild[u]; c >= 0; c = nextSibling[c] {
			order = append(order, c)
			if u != 0 {
				f := fail[u]
				for f != 0 && child(f, label[c]) < 0 {
					f = fail[f]
				}
				if t := child(f, label[c]); t >= 0 {
					fail[c] = t
				}
			}
			if f := fail[c]; len(own[f]) > 0 {
				dict[c] = f
			} else {
				dict[c] = dict[f]
			}
		}
	}

	// Renumber: states without outputs first, in breadth-first order (the root, which
	// has none since no pattern is empty, stays 0).
	hasOutput := func(s int32) bool { return len(own[s]) > 0 || dict[s] >= 0 }
	number := make([]int32, n)
	next := int32(0)
	for _, pass := range []bool{false, true} {
		for _, s := range order {
			if hasOutput(s) == pass {
				number[s] = next
				next++
			}
		}
	}
	a := &Automaton{}
	matchFrom := int32(n)
	for s := range n {
		if hasOutput(int32(s)) {
			matchFrom = min(matchFrom, number[s])
		}
	}
	byNumber := make([]int32, n) // old state by new number
	for s, num := range number {
		byNumber[num] = int32(s)
	}
	a.outStart = make([]int32, n+1)
	a.dictLink = make([]int32, n)
	for num, s := range byNumber {
		a.out = append(a.out, own[s]...)
		a.outStart[num+1] = int32(len(a.out))
		a.dictLink[num] = -1
		if dict[s] >= 0 {
			a.dictLink[num] = number[dict[s]]
		}
	}

	classes := 1
	for _, u := range used {
		if u {
			classes++
		}
	}
	if classes > 256 { // every byte occurs: no shared class needed
		classes = 256
	}
	if n*classes <= denseLimit {
		a.buildDense(n, classes, used, order, number, fail, child)
		a.matchFrom = State(matchFrom) * a.stride
		return a
	}

	a.matchFrom = State(matchFrom)
	a.fail = make([]State, n)
	a.edgeStart = make([]int32, n+1)
	for num, s := range byNumber {
		a.fail[num] = State(number[fail[s]])
		for c := firstChild[s]; c >= 0; c = nextSibling[c] {
			a.edgeByte = append(a.edgeByte, label[c])
			a.edgeNext = append(a.edgeNext, State(number[c]))
		}
		a.edgeStart[num+1] = int32(len(a.edgeByte))
	}
	for b := range 256 {
		if c := rootChild[b]; c != 0 {
			a.root[b] = State(number[c])
		}
	}
	return a
}

// buildDense fills the full transition table: a state's move on a byte is its trie edge,
// or else its failure state's move, which breadth-first order has already computed.
func (a *Automaton) buildDense(n, classes int, used [256]bool, order, number, fail []int32, child func(int32, byte) int32) {
	a.stride = State(classes)
	byteOfClass := make([]byte, 0, classes)
	if classes == 256 {
		for b := range 256 {
			a.classes[b] = uint8(b)
			byteOfClass = append(byteOfClass, byte(b))
		}
	} else {
		byteOfClass = append(byteOfClass, 0) // class 0: the bytes no pattern has; leads to the root
		for b := range 256 {
			if used[b] {
				a.classes[b] = uint8(len(byteOfClass))
				byteOfClass = append(byteOfClass, byte(b))
			}
		}
	}
	a.table = make([]State, n*classes)
	for _, s := range order {
		row := a.table[int(number[s])*classes:][:classes]
		for c, b := range byteOfClass {
			if classes < 256 && c == 0 {
				continue // stays 0, the root
			}
			if t := child(s, b); t >= 0 {
				row[c] = State(number[t]) * a.stride
			} else if s != 0 {
				row[c] = a.table[int(number[fail[s]])*classes+c]
			}
		}
	}
}
