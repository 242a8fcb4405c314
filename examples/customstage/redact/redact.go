// Package redact is a bodystream stage kind written outside bodystream: "redact"
// removes top-level members, such as the password and ssn of every record of a bulk
// upload, from a body of JSON lines (newline-delimited JSON) on its way through.
//
// A binary that imports the package for its init function can name the kind in its
// configuration:
//
//	pipelines:
//	  redacted:
//	    - decompress: {encoding: auto} # redact reads plain bytes only
//	    - redact: {keys: [password, ssn], max_line_bytes: 1048576}
//
// The stage streams: it holds at most one line at a time, and writes each line out as
// soon as its newline has arrived. It fails closed: a line that is not JSON, or that
// is longer than max_line_bytes, fails the whole body (400 and 413 to the client)
// rather than pass on bytes it could not redact.
//
// It cannot read compressed bytes, so it refuses (415) a body whose content-encoding
// is anything but identity rather than let unredacted bytes through. Put a decompress
// step in front of it, as above: decompress decodes gzip, deflate and zstd and removes
// the content-encoding, so that every body that gets past it reaches redact as plain
// bytes.
package redact

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/bodystream/bodystream/stage"
)

const (
	// DefaultMaxLineBytes is max_line_bytes when the configuration does not set it.
	DefaultMaxLineBytes = 1 << 20

	minMaxLineBytes = 1 << 10
	maxMaxLineBytes = 64 << 20

	// copyBufferSize is the size of the read buffer and of the output buffer that
	// each body borrows.
	copyBufferSize = 32 << 10
	// minLineBuffer is the smallest line buffer allocated for a line that spans reads.
	minLineBuffer = 4 << 10
)

func init() {
	stage.Register(stage.Kind{Name: "redact", Build: func(decode func(any) error) (stage.Spec, error) {
		options := Options{MaxLineBytes: DefaultMaxLineBytes}
		if err := decode(&options); err != nil {
			return nil, err
		}
		return options.Build()
	}})
}

// Options are a redact step's options as the configuration writes them.
type Options struct {
	// Keys are the names of the top-level members to remove; at least one is
	// required. A member is removed when its key, decoded as encoding/json decodes
	// it ("pass\u0077ord" is password), equals one of them. Every such member goes,
	// so that a duplicated key cannot slip a second value past. Members of nested
	// objects and arrays are left alone.
	Keys []string `yaml:"keys"`
	// MaxLineBytes is the longest line the step accepts, its newline not counted,
	// from 1 KiB to 64 MiB (DefaultMaxLineBytes when the configuration does not name
	// it). The step can only redact a line it holds whole, so a longer line fails
	// the body with stage.ErrBodyTooLarge.
	MaxLineBytes int `yaml:"max_line_bytes"`
}

// Build checks the options and returns the ready spec.
func (o Options) Build() (stage.Spec, error) {
	if len(o.Keys) == 0 {
		return nil, errors.New("keys: at least one key is required")
	}
	keys := make(map[string]struct{}, len(o.Keys))
	for i, k := range o.Keys {
		switch {
		case k == "":
			return nil, fmt.Errorf("keys[%d]: must not be empty", i)
		case !utf8.ValidString(k):
			// A decoded JSON key is always valid UTF-8: this one could never match.
			return nil, fmt.Errorf("keys[%d]: %q is not valid UTF-8", i, k)
		}
		keys[k] = struct{}{}
	}
	if o.MaxLineBytes < minMaxLineBytes || o.MaxLineBytes > maxMaxLineBytes {
		return nil, fmt.Errorf("max_line_bytes: must be between %d and %d, got %d", minMaxLineBytes, maxMaxLineBytes, o.MaxLineBytes)
	}
	return &redactor{keys: keys, maxLine: o.MaxLineBytes}, nil
}

// redactor is a built redact step. It is immutable and shared by every body.
type redactor struct {
	keys    map[string]struct{}
	maxLine int
}

func (r *redactor) Name() string { return "redact" }

// PreviewSize is 0: the headers alone decide.
func (r *redactor) PreviewSize(*stage.Message) int { return 0 }

// Plan redacts a body in plain bytes and refuses an encoded one (see the package
// documentation). Removing members shortens the body, so content-length goes.
func (r *redactor) Plan(m *stage.Message, _ []byte) (stage.Step, error) {
	if encoded(m) {
		return stage.Step{}, fmt.Errorf("redact: %w %q: decode it with a decompress step first",
			stage.ErrUnsupportedEncoding, strings.Join(m.Header.Values("Content-Encoding"), ", "))
	}
	return stage.Step{
		Transformer: stage.TransformFunc(r.redact),
		Edit:        stage.HeaderEdit{ChangesLength: true},
	}, nil
}

// MemoryEstimate counts the borrowed read and output buffers and the line buffer at
// its largest. The line buffer grows by doubling up to max_line_bytes, and while it
// grows the old half is copied into the new buffer: 1.5 × max_line_bytes at the
// peak. The estimate does not depend on m: the server asks with the message's
// headers as they arrived, before a decompress step in front of redact removes their
// content-encoding.
func (r *redactor) MemoryEstimate(*stage.Message) int64 {
	return int64(r.maxLine) + int64(r.maxLine)/2 + 2*copyBufferSize
}

// encoded reports whether m declares a content-coding other than identity, on any of
// its content-encoding lines or in any item of their lists.
func encoded(m *stage.Message) bool {
	if m == nil {
		return false
	}
	for _, v := range m.Header.Values("Content-Encoding") {
		for c := range strings.SplitSeq(v, ",") {
			if c = strings.TrimSpace(c); c != "" && !strings.EqualFold(c, "identity") {
				return true
			}
		}
	}
	return false
}

// copyBuffers are what one body borrows for its duration.
type copyBuffers struct {
	in  []byte
	out *bufio.Writer
}

var buffers = sync.Pool{New: func() any {
	return &copyBuffers{in: make([]byte, copyBufferSize), out: bufio.NewWriterSize(io.Discard, copyBufferSize)}
}}

// redact runs one body. Output goes through a buffer, since lines are often far
// smaller than a message to Envoy; when src can say that the input paused
// (stage.IdleNotifier), the buffer is flushed then, so that a trickling body still
// streams line by line.
func (r *redactor) redact(dst io.Writer, src io.Reader) error {
	bufs := buffers.Get().(*copyBuffers)
	bufs.out.Reset(dst)
	defer func() {
		bufs.out.Reset(io.Discard) // the pool must not keep dst alive
		buffers.Put(bufs)
	}()
	if n, ok := src.(stage.IdleNotifier); ok {
		n.NotifyIdle(bufs.out.Flush)
	}

	b := body{redactor: r, out: bufs.out}
	for {
		n, err := src.Read(bufs.in)
		if n > 0 {
			if werr := b.write(bufs.in[:n]); werr != nil {
				return werr
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
	}
	if len(b.line) > 0 {
		// The last line, without a newline: it stays without one.
		if err := b.emit(b.line, false); err != nil {
			return err
		}
	}
	return bufs.out.Flush()
}

// body is the state of one body between reads.
type body struct {
	*redactor
	out *bufio.Writer
	// line holds the start of a line that spans reads. A line that lies within one
	// read is redacted where it lies, without a copy.
	line  []byte
	lines int // lines begun so far, to name a failing one
}

// write takes the next bytes of the body: it emits every line they complete and
// holds the rest.
func (b *body) write(p []byte) error {
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			return b.hold(p)
		}
		line := p[:i]
		if len(b.line) > 0 {
			if err := b.hold(line); err != nil {
				return err
			}
			line = b.line
		}
		if err := b.emit(line, true); err != nil {
			return err
		}
		b.line = b.line[:0]
		p = p[i+1:]
	}
	return nil
}

// hold appends p to the held line. It refuses to hold more than max_line_bytes, and
// grows the buffer through max_line_bytes>>k sizes so that the old buffer being
// copied is never more than half the new one (MemoryEstimate counts on it).
func (b *body) hold(p []byte) error {
	need := len(b.line) + len(p)
	if need > b.maxLine {
		return b.tooLarge()
	}
	if need > cap(b.line) {
		size := b.maxLine
		for size/2 >= max(need, minLineBuffer) {
			size /= 2
		}
		grown := make([]byte, len(b.line), size)
		copy(grown, b.line)
		b.line = grown
	}
	b.line = append(b.line, p...)
	return nil
}

func (b *body) tooLarge() error {
	return fmt.Errorf("redact: line %d: %w: longer than max_line_bytes %d", b.lines+1, stage.ErrBodyTooLarge, b.maxLine)
}

// emit writes one whole line, redacted, and its newline if it had one. An error
// never quotes the line: it may hold what the step is there to remove.
func (b *body) emit(line []byte, newline bool) error {
	if len(line) > b.maxLine {
		return b.tooLarge()
	}
	b.lines++
	start := skipSpace(line, 0)
	switch {
	case start == len(line):
		// Empty, or only whitespace (the "\r" of a blank "\r\n" line): kept as it is.
		b.out.Write(line)
	case !json.Valid(line):
		return fmt.Errorf("redact: line %d: %w: not valid JSON", b.lines, stage.ErrCorruptInput)
	case line[start] != '{':
		// An array, a string, a number...: no members to remove.
		b.out.Write(line)
	default:
		b.writeObject(line)
	}
	nl := lineEnd[:0]
	if newline {
		nl = lineEnd
	}
	// bufio.Writer's error is sticky: this last Write reports any write of the line
	// that failed.
	_, err := b.out.Write(nl)
	return err
}

var lineEnd = []byte{'\n'}

// writeObject writes line, a valid JSON object with its surrounding whitespace,
// without the members whose key is configured. Everything else stays byte for byte
// as it was: member order, whitespace, the spelling of numbers and escapes.
//
// Member i spans from the end of member i-1 (or the '{') to the end of its value, so
// that it takes its leading comma with it. A kept member that was not first but is
// first now leaves that comma behind and takes the first member's leading whitespace
// instead.
func (b *body) writeObject(line []byte) {
	open := skipSpace(line, 0) + 1 // just after the '{'
	b.out.Write(line[:open])
	pos, firstKey := open, -1
	kept := false
	for {
		key := skipSpace(line, pos)
		if line[key] == '}' {
			break
		}
		if line[key] == ',' {
			key = skipSpace(line, key+1)
		}
		if firstKey < 0 {
			firstKey = key
		}
		keyEnd := endOfString(line, key)
		value := skipSpace(line, skipSpace(line, keyEnd)+1) // past the ':'
		end := endOfValue(line, value)
		switch {
		case b.matches(line[key:keyEnd]):
		case !kept && pos != open:
			b.out.Write(line[open:firstKey])
			b.out.Write(line[key:end])
			kept = true
		default:
			b.out.Write(line[pos:end])
			kept = true
		}
		pos = end
	}
	b.out.Write(line[pos:])
}

// matches reports whether quoted, a member's key with its quotes, is configured. A
// key with escapes or bytes that are not UTF-8 is compared as encoding/json decodes
// it; any other key is its own bytes.
func (b *body) matches(quoted []byte) bool {
	raw := quoted[1 : len(quoted)-1]
	if bytes.IndexByte(raw, '\\') < 0 && utf8.Valid(raw) {
		_, ok := b.keys[string(raw)] // no allocation: a map index converts in place
		return ok
	}
	var key string
	if err := json.Unmarshal(quoted, &key); err != nil {
		return false // not reached: the line is valid JSON
	}
	_, ok := b.keys[key]
	return ok
}

// The scanners below walk a line that json.Valid accepted, so they need not check
// what they skip.

// skipSpace returns the index of the first byte at or after i that is not JSON
// whitespace, or len(b).
func skipSpace(b []byte, i int) int {
	for i < len(b) {
		switch b[i] {
		case ' ', '\t', '\r', '\n':
			i++
		default:
			return i
		}
	}
	return i
}

// endOfString returns the index just after the string that starts at b[i] == '"'.
func endOfString(b []byte, i int) int {
	for i++; ; i++ {
		switch b[i] {
		case '\\':
			i++ // the escaped byte cannot end the string
		case '"':
			return i + 1
		}
	}
}

// endOfValue returns the index just after the value that starts at b[i].
func endOfValue(b []byte, i int) int {
	switch b[i] {
	case '"':
		return endOfString(b, i)
	case '{', '[':
		depth := 0
		for ; ; i++ {
			switch b[i] {
			case '"':
				i = endOfString(b, i) - 1
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return i + 1
				}
			}
		}
	default: // a number, true, false or null
		for ; i < len(b); i++ {
			switch b[i] {
			case ',', '}', ']', ' ', '\t', '\r', '\n':
				return i
			}
		}
		return i
	}
}
