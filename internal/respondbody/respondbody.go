// Package respondbody is the body the echo's respond endpoint sends, shared with the tests
// that check what a client decodes from it.
package respondbody

import (
	"math/rand/v2"
	"strings"
)

// Text is what a body repeats: text that compresses well.
const Text = "bodystream answers with the response the test asked for. "

// Body is the body of n bytes: Text repeated and cut to n bytes, or with random, the
// first n bytes of a ChaCha8 stream of the zero key.
func Body(n int, random bool) []byte {
	if random {
		b := make([]byte, n)
		rand.NewChaCha8([32]byte{}).Read(b)
		return b
	}
	return []byte(strings.Repeat(Text, n/len(Text)+1)[:n])
}
