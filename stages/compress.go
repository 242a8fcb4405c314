package stages

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/bodystream/bodystream/stage"
)

func init() { register("compress", newCompress) }

// ETag policies of the compress stage: what happens to a strong entity tag when the
// body is compressed, since the compressed bytes are no longer the tagged ones.
const (
	etagWeaken = "weaken" // W/"x": still a valid weak validator
	etagRemove = "remove" // drop a strong tag, as Envoy's compressor does
	etagSkip   = "skip"   // do not compress a response that has any ETag
)

// defaultMinContentLength is Envoy's compressor's default: shorter bodies grow.
const defaultMinContentLength = 30

// Compress compresses a response in the best content-coding that both the route
// offers and the client accepts (Accept-Encoding), with the rules of Envoy's
// compressor filter; on a request it uses the first offered coding, since the
// upstream's capability is configuration, not negotiation.
type Compress struct {
	// Encodings are the codings offered, in the route's order of preference (the
	// first wins a tie of client weights), each with its level.
	Encodings []EncodingOption `yaml:"encodings"`
	// MinContentLength: a body whose content-length is shorter passes uncompressed.
	MinContentLength int64 `yaml:"min_content_length"`
	// ETag is weaken, remove or skip (see the constants).
	ETag string `yaml:"etag"`
	// ContentTypes, when not empty, are the only media types compressed ("text/*"
	// for a whole type); a body with no content-type is compressed.
	ContentTypes []string `yaml:"content_types"`
	SkipOptions  `yaml:",inline"`
}

// EncodingOption is one offered content-coding.
type EncodingOption struct {
	// Name is the content-encoding token: br, gzip or zstd.
	Name string `yaml:"name"`
	// Level is the coding's level (br 0–11, gzip 1–9, zstd 1–22); absent takes
	// the coding's default (br 3, gzip 1, zstd 1).
	Level *int `yaml:"level"`
}

func newCompress() Compress {
	return Compress{
		Encodings:        []EncodingOption{{Name: "zstd"}, {Name: "gzip"}},
		MinContentLength: defaultMinContentLength,
		ETag:             etagWeaken,
		SkipOptions:      defaultSkipOptions(),
	}
}

// Build checks the options and builds one encoder per offered coding.
func (c Compress) Build() (stage.Spec, error) {
	if len(c.Encodings) == 0 {
		return nil, fmt.Errorf("encodings: must offer at least one of %s", strings.Join(encodingNames(), ", "))
	}
	c.Encodings = slices.Clone(c.Encodings)
	p := &compressPlanner{encoders: make(map[string]codingEncoder, len(c.Encodings))}
	for i, option := range c.Encodings {
		name := strings.ToLower(strings.TrimSpace(option.Name))
		enc, ok := lookupEncoding(name)
		switch {
		case !ok:
			return nil, fmt.Errorf("encodings[%d].name: must be one of %s, got %q", i, strings.Join(encodingNames(), ", "), option.Name)
		case p.encoders[name] != nil:
			return nil, fmt.Errorf("encodings[%d].name: %q is offered twice", i, name)
		}
		level := enc.defaultLevel
		if option.Level != nil {
			level = *option.Level
		}
		if level < enc.minLevel || level > enc.maxLevel {
			return nil, fmt.Errorf("encodings[%d].level: %s takes %d to %d, got %d", i, name, enc.minLevel, enc.maxLevel, level)
		}
		e, err := enc.newEncoder(level)
		if err != nil {
			return nil, fmt.Errorf("encodings[%d]: %w", i, err)
		}
		c.Encodings[i] = EncodingOption{Name: name, Level: &level}
		p.offered = append(p.offered, name)
		p.encoders[name] = e
	}
	if c.MinContentLength < 0 {
		return nil, fmt.Errorf("min_content_length: must not be negative, got %d", c.MinContentLength)
	}
	switch c.ETag {
	case etagWeaken, etagRemove, etagSkip:
	default:
		return nil, fmt.Errorf("etag: must be %s, %s or %s, got %q", etagWeaken, etagRemove, etagSkip, c.ETag)
	}
	types := make([]string, len(c.ContentTypes))
	for i, pattern := range c.ContentTypes {
		t, err := parseMediaTypePattern(pattern)
		if err != nil {
			return nil, fmt.Errorf("content_types: %w", err)
		}
		types[i] = t
	}
	c.ContentTypes = types
	skip, err := c.SkipOptions.checked()
	if err != nil {
		return nil, err
	}
	c.SkipOptions = skip
	p.Compress = c
	return p, nil
}

// compressPlanner is a built compress step.
type compressPlanner struct {
	Compress
	offered  []string // coding names in preference order
	encoders map[string]codingEncoder
}

func (c *compressPlanner) Name() string { return "compress" }

// decide returns the coding for m ("" for none) and whether the choice depended on
// the request's Accept-Encoding, so that the response must say Vary.
func (c *compressPlanner) decide(m *stage.Message) (coding string, vary bool) {
	if c.skipsByHeaders(m) || c.tooShort(m) || !c.typeAllowed(m) {
		return "", false
	}
	if m.Direction == stage.Request {
		return c.offered[0], false
	}
	if untouchable(m) || noTransform(m.Header) || (c.ETag == etagSkip && m.Header.Get("Etag") != "") {
		return "", false
	}
	if m.RequestHeader == nil { // header mode SKIP: what the client accepts is unknown
		return "", false
	}
	return parseAcceptEncoding(m.RequestHeader).choose(c.offered), true
}

func (c *compressPlanner) PreviewSize(m *stage.Message) int {
	if coding, _ := c.decide(m); coding == "" {
		return 0
	}
	return c.PreviewBytes
}

// MemoryEstimate counts the encoder m may get; with no message, the largest. It
// goes by what no earlier step can change (the request's headers, the method and
// status), not by the rules on the response's own headers: the budget sees the
// message as it enters the pipeline, and a decompress step before this one removes
// the content-encoding that would make the body skip.
func (c *compressPlanner) MemoryEstimate(m *stage.Message) int64 {
	coding := c.offered[0]
	switch {
	case m == nil:
		var most int64
		for _, e := range c.encoders {
			most = max(most, e.memoryEstimate())
		}
		return most
	case m.Direction == stage.Response && (untouchable(m) || m.RequestHeader == nil):
		return 0
	case m.Direction == stage.Response:
		if coding = parseAcceptEncoding(m.RequestHeader).choose(c.offered); coding == "" {
			return 0
		}
	}
	return c.encoders[coding].memoryEstimate()
}

// Plan compresses the body in the negotiated coding, unless a rule or the preview
// says not to. Either way it adds Vary when the choice depended on Accept-Encoding.
func (c *compressPlanner) Plan(m *stage.Message, preview []byte) (stage.Step, error) {
	coding, vary := c.decide(m)
	var edit stage.HeaderEdit
	if vary {
		if merged, changed := mergeVary(m.Header.Values("Vary"), "Accept-Encoding"); changed {
			edit.Vary = &merged
		}
	}
	if coding == "" || c.skips(m, preview) {
		return stage.Step{Edit: edit}, nil
	}
	if etag := m.Header.Get("Etag"); m.Direction == stage.Response && etag != "" && !isWeakETag(etag) {
		tag := ""
		if c.ETag == etagWeaken {
			tag = "W/" + etag
		}
		edit.ETag = &tag
	}
	edit.ContentEncoding, edit.ChangesLength = &coding, true
	return stage.Step{Transformer: c.encoders[coding].transformer(preview), Edit: edit}, nil
}

// tooShort: the body's length is known and below MinContentLength.
func (c *compressPlanner) tooShort(m *stage.Message) bool {
	n, err := strconv.ParseInt(strings.TrimSpace(m.Header.Get("Content-Length")), 10, 64)
	return err == nil && n < c.MinContentLength
}

func (c *compressPlanner) typeAllowed(m *stage.Message) bool {
	mediaType := contentMediaType(m.Header.Get("Content-Type"))
	if len(c.ContentTypes) == 0 || mediaType == "" {
		return true
	}
	for _, pattern := range c.ContentTypes {
		if mediaTypeMatches(pattern, mediaType) {
			return true
		}
	}
	return false
}

// untouchable: a response that has no body to encode, or whose body is part of a
// representation (206), or that answers HEAD, whose headers describe a GET. A
// response without a status is one whose headers Envoy did not send (header mode
// SKIP): no content-encoding could be set on it.
func untouchable(m *stage.Message) bool {
	if strings.EqualFold(m.RequestHeader.Get(":method"), "HEAD") {
		return true
	}
	status, err := strconv.Atoi(m.Header.Get(":status"))
	return err != nil || status < 200 || status == 204 || status == 206 || status == 304
}

// noTransform: Cache-Control forbids changing the content (RFC 9111 §5.2.2.6).
func noTransform(h map[string][]string) bool {
	for _, value := range h["Cache-Control"] {
		for directive := range strings.SplitSeq(value, ",") {
			if strings.EqualFold(strings.TrimSpace(directive), "no-transform") {
				return true
			}
		}
	}
	return false
}

func isWeakETag(etag string) bool {
	return len(etag) >= 2 && (etag[0] == 'W' || etag[0] == 'w') && etag[1] == '/'
}

// mergeVary adds token to the Vary values, unless one of them names it or "*". It
// returns the single value to set and whether it differs from what was there.
func mergeVary(values []string, token string) (string, bool) {
	var present []string
	for _, value := range values {
		for field := range strings.SplitSeq(value, ",") {
			field = strings.TrimSpace(field)
			if field == "*" || strings.EqualFold(field, token) {
				return "", false
			}
			if field != "" {
				present = append(present, field)
			}
		}
	}
	return strings.Join(append(present, token), ", "), true
}
