// Package stage defines what every layer of bodystream shares about a body: the
// message it belongs to, the transforms and observers that process it, what they
// learn and the errors that give a failure its meaning. Package stages holds
// bodystream's own stages; a stage of your own implements the same interfaces.
//
// A stage knows bytes and its own options, nothing about gRPC or Envoy. A configured
// step (a Spec) is planned once per body: planning looks at the message's headers
// (and, if the spec asks for one, a bounded preview of the first bytes) and yields
// the Step that runs for that body.
package stage

import (
	"errors"
	"fmt"
	"io"
	"net/textproto"
)

// Direction says which HTTP message a body belongs to.
type Direction int

const (
	Request Direction = iota
	Response
)

func (d Direction) String() string {
	if d == Response {
		return "response"
	}
	return "request"
}

// Message describes the HTTP message whose body a pipeline transforms.
type Message struct {
	Direction Direction
	// Header holds the message's headers with canonical keys (textproto). It is
	// empty when Envoy's header mode for the direction is SKIP.
	Header textproto.MIMEHeader
	// RequestID is the request's x-request-id, the same for both directions.
	RequestID string
	// RequestHeader holds, for a response, the request's headers (canonical keys,
	// pseudo-headers such as ":method" as Envoy sent them): what the client accepts
	// decides how the response may be encoded. It is nil for a request, and for a
	// response whose request headers were not sent to bodystream (header mode SKIP).
	RequestHeader textproto.MIMEHeader
}

// A Transformer transforms one body: it reads src until io.EOF and writes its output
// to dst. It returns nil only when all output has been written to dst.
type Transformer interface {
	Transform(dst io.Writer, src io.Reader) error
}

// TransformFunc adapts a function to Transformer.
type TransformFunc func(dst io.Writer, src io.Reader) error

func (f TransformFunc) Transform(dst io.Writer, src io.Reader) error { return f(dst, src) }

// An Observer sees the bytes at one point of a pipeline and passes nothing on.
// Write must not retain p. An error from Write (a scan match, a size limit) stops the body.
type Observer interface {
	io.Writer
	// Finish is called once after the last byte was written; it commits what the
	// observer keeps (renames a file into place) and reports what it learned.
	Finish() (Result, error)
	// Abort is called instead of Finish when the body did not complete; it releases
	// everything the observer holds (removes a partial file). It must be safe to call
	// after Finish returned an error.
	Abort()
}

// Result is what an observer learned about a body: a digest, a scan tag.
type Result struct {
	// Metadata fields go to Envoy's dynamic metadata (namespace "bodystream").
	Metadata map[string]string
	// Headers are set on the response headers when the server still can: request-body
	// results are known before the response headers go out.
	Headers map[string]string
	// Trailers are set on the message's trailers when it has trailers.
	Trailers map[string]string
}

// Merge copies other's entries into r, allocating maps as needed.
func (r *Result) Merge(other Result) {
	merge := func(dst *map[string]string, src map[string]string) {
		for k, v := range src {
			if *dst == nil {
				*dst = make(map[string]string, len(src))
			}
			(*dst)[k] = v
		}
	}
	merge(&r.Metadata, other.Metadata)
	merge(&r.Headers, other.Headers)
	merge(&r.Trailers, other.Trailers)
}

// HeaderEdit is what a step changes in the message's headers.
type HeaderEdit struct {
	// ContentEncoding, when not nil, replaces the content-encoding header; an empty
	// string removes it.
	ContentEncoding *string
	// ChangesLength says the body's length may differ from the input's, so that a
	// content-length header must be removed (streaming) or recomputed (buffered).
	ChangesLength bool
	// Vary, when not nil, replaces the vary header (a stage merges its token into
	// the value it saw); an empty string removes it.
	Vary *string
	// ETag, when not nil, replaces the etag header (a compressor weakens a strong
	// tag); an empty string removes it.
	ETag *string
}

// Then returns the edit of e followed by next.
func (e HeaderEdit) Then(next HeaderEdit) HeaderEdit {
	if next.ContentEncoding != nil {
		e.ContentEncoding = next.ContentEncoding
	}
	if next.Vary != nil {
		e.Vary = next.Vary
	}
	if next.ETag != nil {
		e.ETag = next.ETag
	}
	e.ChangesLength = e.ChangesLength || next.ChangesLength
	return e
}

// Step is what a Spec does for one body. Exactly one of Transformer and Observer is
// set, or neither when the step decided to do nothing for this body (a compressor
// that skips video, for example). Edit applies in every case: a compressor that
// chose not to compress still says, with Vary, that the choice depended on the
// request.
type Step struct {
	Transformer Transformer
	Observer    Observer
	Edit        HeaderEdit
}

// IdleNotifier is implemented by the src a pipeline hands a Transformer. A
// transformer that holds output back (a compressor's block) registers its flush with
// NotifyIdle before it reads, so that a trickling body still streams: when the input
// has paused for the pipeline's flush delay and bytes came since the last call, src
// calls flush on the goroutine blocked in its Read, then goes on waiting. An error
// from flush ends that Read with it. Reads themselves return only data, io.EOF or
// the failure that ended the body.
type IdleNotifier interface {
	NotifyIdle(flush func() error)
}

// Spec is one configured step of a pipeline.
type Spec interface {
	// Name is the step's kind as written in the configuration ("gzip", "hash", ...).
	Name() string
	// PreviewSize is how many leading body bytes Plan wants to see for message m
	// (0: none, as when the headers alone decide). The server holds at most this
	// many bytes before planning.
	PreviewSize(m *Message) int
	// Plan builds the step for one body. preview holds up to PreviewSize leading bytes
	// (fewer when the body is shorter). Plan sees the headers as edited by the steps
	// before it.
	Plan(m *Message, preview []byte) (Step, error)
}

// Errors a stage returns so that the server can answer the client with meaning.
var (
	// ErrBodyTooLarge: a body or its decompressed form exceeds a configured limit (413).
	ErrBodyTooLarge = errors.New("body too large")
	// ErrCorruptInput: the body is not valid in its declared encoding (400).
	ErrCorruptInput = errors.New("corrupt input")
	// ErrUnsupportedEncoding: a content-encoding no stage can decode (415).
	ErrUnsupportedEncoding = errors.New("unsupported content-encoding")
	// ErrDecompressionBomb: a body decodes to more bytes per compressed byte than the
	// configured ratio allows. It is an ErrBodyTooLarge (413).
	ErrDecompressionBomb = fmt.Errorf("decompression bomb: %w", ErrBodyTooLarge)
	// ErrStorageFull: a stage that stores bodies has no room left (507).
	ErrStorageFull = errors.New("storage full")
)

// ScanMatch is returned by the scan observer when a reject rule matches (403).
type ScanMatch struct {
	Rule   string // the rule's configured name
	Offset int64  // offset of the match's first byte in the scanned stream
}

func (m *ScanMatch) Error() string {
	return fmt.Sprintf("scan rule %q matched at offset %d", m.Rule, m.Offset)
}
