package stages

import (
	"fmt"
	"strings"

	"github.com/klauspost/compress"

	"github.com/bodystream/bodystream/stage"
)

// Compressors skip what does not compress: a body that already has an encoding, media
// types that are compressed by nature, and bodies whose first bytes look random.
// Compressing those costs CPU and codec memory for a body that comes out larger.

const (
	defaultPreviewBytes = 8 << 10
	// maxPreviewBytes bounds what the server holds per body before planning.
	maxPreviewBytes = 1 << 20
	// defaultMinEstimate separates compressed data from text. compress.Estimate of an
	// 8 KiB preview, measured: random bytes 0.03, gzip, zstd and WOFF2 streams
	// 0.05–0.08, JSON and English text 0.36–0.50, x86 code 0.4–0.7. PNG (0.11–0.27)
	// and zip (0.03–0.25) fool it, which is why the media type is checked first. Its
	// documentation calls values above 0.1 likely compressible.
	defaultMinEstimate = 0.1
	// estimateMinBytes is the shortest preview compress.Estimate judges: under it the
	// estimate is 0, which means "cannot tell", not "random".
	estimateMinBytes = 16
)

// defaultSkipContentTypes are media types whose formats are compressed already.
// application/octet-stream is not one: it says nothing about the bytes, which the
// estimate looks at instead.
func defaultSkipContentTypes() []string {
	return []string{
		"video/*", "audio/*",
		"image/jpeg", "image/png", "image/gif", "image/webp", "image/avif",
		"application/zip", "application/gzip", "application/zstd",
		"application/x-7z-compressed", "application/x-rar-compressed",
	}
}

// SkipOptions say which bodies a compressor passes on untouched, with no
// content-encoding set.
type SkipOptions struct {
	// SkipContentTypes are media types ("image/png", "video/*" for a whole type)
	// not to compress. Parameters such as charset are ignored.
	SkipContentTypes []string `yaml:"skip_content_types"`
	// PreviewBytes is how many leading bytes the compressibility estimate looks at;
	// 0 turns the estimate off.
	PreviewBytes int `yaml:"preview_bytes"`
	// MinEstimate is the compress.Estimate score (0 random, above 0.5 very
	// compressible) under which a body is not compressed.
	MinEstimate float64 `yaml:"min_estimate"`
}

func defaultSkipOptions() SkipOptions {
	return SkipOptions{
		SkipContentTypes: defaultSkipContentTypes(),
		PreviewBytes:     defaultPreviewBytes,
		MinEstimate:      defaultMinEstimate,
	}
}

// checked returns the options with the media types lower-cased, or the first wrong one.
func (o SkipOptions) checked() (SkipOptions, error) {
	types := make([]string, len(o.SkipContentTypes))
	for i, pattern := range o.SkipContentTypes {
		p, err := parseMediaTypePattern(pattern)
		if err != nil {
			return o, fmt.Errorf("skip_content_types: %w", err)
		}
		types[i] = p
	}
	o.SkipContentTypes = types
	if o.PreviewBytes < 0 || o.PreviewBytes > maxPreviewBytes {
		return o, fmt.Errorf("preview_bytes: must be between 0 and %d, got %d", maxPreviewBytes, o.PreviewBytes)
	}
	if !(o.MinEstimate >= 0 && o.MinEstimate <= 1) { // also refuses NaN
		return o, fmt.Errorf("min_estimate: must be between 0 and 1, got %v", o.MinEstimate)
	}
	return o, nil
}

// skips reports whether the body of m, which starts with preview, should pass on
// uncompressed.
func (o *SkipOptions) skips(m *stage.Message, preview []byte) bool {
	if o.skipsByHeaders(m) {
		return true
	}
	// The preview may be longer than asked for: another step of the pipeline asked
	// for more.
	preview = preview[:min(len(preview), o.PreviewBytes)]
	return len(preview) >= estimateMinBytes && compress.Estimate(preview) < o.MinEstimate
}

// skipsByHeaders decides from the headers alone: an encoded body or a media type
// that is compressed by nature.
func (o *SkipOptions) skipsByHeaders(m *stage.Message) bool {
	if m == nil {
		return false
	}
	for _, enc := range m.Header.Values("Content-Encoding") {
		if enc = strings.TrimSpace(enc); enc != "" && !strings.EqualFold(enc, "identity") {
			return true
		}
	}
	if mediaType := contentMediaType(m.Header.Get("Content-Type")); mediaType != "" {
		for _, pattern := range o.SkipContentTypes {
			if mediaTypeMatches(pattern, mediaType) {
				return true
			}
		}
	}
	return false
}

// previewSize asks for no preview when the headers already decide: holding the
// start of a body back would only delay it.
func (o *SkipOptions) previewSize(m *stage.Message) int {
	if o.skipsByHeaders(m) {
		return 0
	}
	return o.PreviewBytes
}

// contentMediaType returns the lower-case media type of a Content-Type value, without
// parameters.
func contentMediaType(contentType string) string {
	mediaType, _, _ := strings.Cut(contentType, ";")
	return strings.ToLower(strings.TrimSpace(mediaType))
}
