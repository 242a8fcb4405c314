package server

import (
	"bytes"
	"sync"
	"testing"
)

func TestReplyBuffer(t *testing.T) {
	cases := []struct {
		name   string
		writes []string
		want   []byte
	}{
		{"nothing", nil, nil},
		{"empty writes", []string{"", ""}, nil},
		{"one write", []string{"abc"}, []byte("abc")},
		{"several writes", []string{"ab", "", "c", "def"}, []byte("abcdef")},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var c replyBuffer
			for _, w := range tc.writes {
				if n, err := c.Write([]byte(w)); n != len(w) || err != nil {
					t.Fatalf("Write(%q) = %d, %v", w, n, err)
				}
			}
			got := c.take()
			if !bytes.Equal(got, tc.want) || (tc.want == nil) != (got == nil) {
				t.Errorf("take() = %q, want %q", got, tc.want)
			}
			if again := c.take(); again != nil {
				t.Errorf("second take() = %q, want nil", again)
			}
			// What Take returned belongs to the caller: later writes leave it alone.
			if _, err := c.Write([]byte("xyz")); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, tc.want) {
				t.Errorf("a later Write changed what Take returned to %q", got)
			}
			if next := c.take(); !bytes.Equal(next, []byte("xyz")) {
				t.Errorf("Take after a new Write = %q, want %q", next, "xyz")
			}
		})
	}
}

func TestReplyBufferConcurrentWriteAndTake(t *testing.T) {
	const writers, writes = 4, 200
	var c replyBuffer
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for range writes {
				c.Write([]byte{byte('a' + w)})
			}
		})
	}
	var gathered []byte
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	for waiting := true; waiting; {
		select {
		case <-done:
			waiting = false
		default:
		}
		gathered = append(gathered, c.take()...)
	}
	gathered = append(gathered, c.take()...)
	if len(gathered) != writers*writes {
		t.Fatalf("gathered %d bytes, want %d", len(gathered), writers*writes)
	}
	for w := range writers {
		if n := bytes.Count(gathered, []byte{byte('a' + w)}); n != writes {
			t.Errorf("writer %d: %d bytes gathered, want %d", w, n, writes)
		}
	}
}

func TestReplyBufferCountsAndDiscards(t *testing.T) {
	var r replyBuffer
	r.Write([]byte("abc"))
	r.take()
	r.Write([]byte("de"))
	r.take()
	if r.taken != 5 {
		t.Errorf("taken %d, want 5", r.taken)
	}
	r.discard = true
	if n, err := r.Write([]byte("xyz")); n != 3 || err != nil {
		t.Errorf("discarding Write = %d, %v; want 3, nil", n, err)
	}
	if got := r.take(); got != nil || r.taken != 5 {
		t.Errorf("after a discarded write: take %q, taken %d; want nothing gathered", got, r.taken)
	}
}
