package stages

import (
	"bytes"
	"net/textproto"
	"strings"
	"sync"
	"testing"

	"github.com/bodystream/bodystream/stage"
)

var decoders = map[string]func([]byte) ([]byte, error){"gzip": gunzip, "zstd": unzstd, "br": unbrotli}

func compressSpec(t testing.TB, edit func(*Compress)) *compressPlanner {
	t.Helper()
	c := newCompress()
	c.Encodings = []EncodingOption{{Name: "zstd"}, {Name: "br"}, {Name: "gzip"}}
	if edit != nil {
		edit(&c)
	}
	spec, err := c.Build()
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	return spec.(*compressPlanner)
}

// response is a response message with the given headers ("Key: value"; status 200
// unless one is given) whose request had requestHeaders; nil requestHeaders: the
// request headers were skipped.
func response(requestHeaders []string, headers ...string) *stage.Message {
	m := &stage.Message{Direction: stage.Response, Header: textproto.MIMEHeader{":status": {"200"}}}
	for _, h := range headers {
		k, v, _ := strings.Cut(h, ": ")
		if k == ":status" {
			m.Header.Del(k)
		}
		m.Header.Add(k, v)
	}
	if requestHeaders != nil {
		m.RequestHeader = textproto.MIMEHeader{}
		for _, h := range requestHeaders {
			k, v, _ := strings.Cut(h, ": ")
			m.RequestHeader.Add(k, v)
		}
	}
	return m
}

func str(s string) *string { return &s }

func TestCompressStagePlan(t *testing.T) {
	json := codecJSON(4 << 10)
	random := codecRandom(4<<10, 7)
	ae := func(v string) []string { return []string{":method: GET", "Accept-Encoding: " + v} }
	tests := []struct {
		name     string
		edit     func(*Compress)
		m        *stage.Message
		preview  []byte
		encoding string  // "" no transform
		vary     *string // nil: untouched
		etag     *string // nil: untouched
	}{
		{"no accept-encoding: identity, vary", nil, response([]string{":method: GET"}, ":status: 200"), json, "", str("Accept-Encoding"), nil},
		{"gzip", nil, response(ae("gzip"), ":status: 200"), json, "gzip", str("Accept-Encoding"), nil},
		{"br over gzip", nil, response(ae("br;q=1, gzip;q=0.5"), ":status: 200"), json, "br", str("Accept-Encoding"), nil},
		{"wildcard: route's first", nil, response(ae("*"), ":status: 200"), json, "zstd", str("Accept-Encoding"), nil},
		{"refused: identity, vary", nil, response(ae("gzip;q=0"), ":status: 200"), json, "", str("Accept-Encoding"), nil},
		{"vary merged", nil, response(ae("gzip"), ":status: 200", "Vary: Origin", "Vary: Cookie"), json, "gzip", str("Origin, Cookie, Accept-Encoding"), nil},
		{"vary already says it", nil, response(ae("gzip"), "Vary: origin, accept-encoding"), json, "gzip", nil, nil},
		{"vary star", nil, response(ae("gzip"), "Vary: *"), json, "gzip", nil, nil},
		{"strong etag weakened", nil, response(ae("gzip"), `Etag: "abc"`), json, "gzip", str("Accept-Encoding"), str(`W/"abc"`)},
		{"weak etag kept", nil, response(ae("gzip"), `Etag: W/"abc"`), json, "gzip", str("Accept-Encoding"), nil},
		{"etag removed", func(c *Compress) { c.ETag = etagRemove }, response(ae("gzip"), `Etag: "abc"`), json, "gzip", str("Accept-Encoding"), str("")},
		{"etag skip", func(c *Compress) { c.ETag = etagSkip }, response(ae("gzip"), `Etag: W/"abc"`), json, "", nil, nil},
		{"etag untouched when not compressed", nil, response(ae("identity"), `Etag: "abc"`), json, "", str("Accept-Encoding"), nil},
		{"no-transform", nil, response(ae("gzip"), "Cache-Control: public, No-Transform"), json, "", nil, nil},
		{"already encoded", nil, response(ae("gzip"), "Content-Encoding: br"), json, "", nil, nil},
		{"short", nil, response(ae("gzip"), "Content-Length: 29"), json[:29], "", nil, nil},
		{"at the minimum", nil, response(ae("gzip"), "Content-Length: 30"), json[:30], "gzip", str("Accept-Encoding"), nil},
		{"denied type", nil, response(ae("gzip"), "Content-Type: image/png"), json, "", nil, nil},
		{"not an allowed type", func(c *Compress) { c.ContentTypes = []string{"text/*", "application/json"} }, response(ae("gzip"), "Content-Type: image/svg+xml"), json, "", nil, nil},
		{"an allowed type", func(c *Compress) { c.ContentTypes = []string{"text/*", "application/json"} }, response(ae("gzip"), "Content-Type: Text/HTML; charset=utf-8"), json, "gzip", str("Accept-Encoding"), nil},
		{"random preview: not compressed, still vary", nil, response(ae("gzip"), ":status: 200"), random, "", str("Accept-Encoding"), nil},
		{"HEAD", nil, response([]string{":method: HEAD", "Accept-Encoding: gzip"}, ":status: 200"), nil, "", nil, nil},
		{"204", nil, response(ae("gzip"), ":status: 204"), nil, "", nil, nil},
		{"206", nil, response(ae("gzip"), ":status: 206"), json, "", nil, nil},
		{"304", nil, response(ae("gzip"), ":status: 304"), nil, "", nil, nil},
		{"request headers skipped", nil, response(nil, ":status: 200"), json, "", nil, nil},
		{"response headers skipped", nil, &stage.Message{Direction: stage.Response, Header: textproto.MIMEHeader{}, RequestHeader: textproto.MIMEHeader{"Accept-Encoding": {"gzip"}}}, json, "", nil, nil},
		{"request: first offered, no vary", nil, &stage.Message{Direction: stage.Request, Header: textproto.MIMEHeader{}}, json, "zstd", nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := compressSpec(t, tt.edit)
			step, err := spec.Plan(tt.m, tt.preview)
			if err != nil {
				t.Fatal(err)
			}
			got := ""
			if step.Transformer != nil {
				if step.Edit.ContentEncoding == nil || !step.Edit.ChangesLength {
					t.Fatalf("a transform with edit %+v", step.Edit)
				}
				got = *step.Edit.ContentEncoding
			} else if step.Edit.ContentEncoding != nil || step.Edit.ChangesLength {
				t.Fatalf("no transform, but edit %+v", step.Edit)
			}
			if got != tt.encoding {
				t.Errorf("encoding %q, want %q", got, tt.encoding)
			}
			if s := deref(step.Edit.Vary); s != deref(tt.vary) {
				t.Errorf("vary edit %s, want %s", s, deref(tt.vary))
			}
			if s := deref(step.Edit.ETag); s != deref(tt.etag) {
				t.Errorf("etag edit %s, want %s", s, deref(tt.etag))
			}
			wantPreview := 0
			if tt.encoding != "" || (tt.name == "random preview: not compressed, still vary") {
				wantPreview = spec.PreviewBytes
			}
			if n := spec.PreviewSize(tt.m); n != wantPreview {
				t.Errorf("PreviewSize %d, want %d", n, wantPreview)
			}
		})
	}
}

func deref(s *string) string {
	if s == nil {
		return "<untouched>"
	}
	return "set to " + *s
}

// TestCompressStageRoundTrip: every offered coding decodes back to the input, at
// the default and the extreme levels.
func TestCompressStageRoundTrip(t *testing.T) {
	inputs := map[string][]byte{"empty": nil, "byte": {'x'}, "json": codecJSON(64 << 10), "random": codecRandom(32<<10, 3)}
	levels := map[string][]int{"gzip": {1, 9}, "zstd": {1, 22}, "br": {0, 3, 6}} // br 11 takes seconds under -race
	for name, lv := range levels {
		for _, level := range lv {
			spec := compressSpec(t, func(c *Compress) { c.Encodings = []EncodingOption{{Name: name, Level: &level}}; c.PreviewBytes = 0 })
			var wg sync.WaitGroup
			for in, data := range inputs {
				wg.Go(func() { // encoders are shared by concurrent bodies
					step, err := spec.Plan(response(nil), nil) // request headers skipped: no coding
					if err != nil || step.Transformer != nil {
						t.Errorf("%s: Plan without request headers = %+v, %v", name, step, err)
						return
					}
					step, err = spec.Plan(response([]string{"Accept-Encoding: " + name}), nil)
					if err != nil || step.Transformer == nil {
						t.Errorf("%s: Plan = %+v, %v", name, step, err)
						return
					}
					var out bytes.Buffer
					if err := step.Transformer.Transform(&out, bytes.NewReader(data)); err != nil {
						t.Errorf("%s %d %s: %v", name, level, in, err)
						return
					}
					got, err := decoders[name](out.Bytes())
					if err != nil || !bytes.Equal(got, data) {
						t.Errorf("%s level %d, %s: decoded %d bytes (%v), want the %d put in", name, level, in, len(got), err, len(data))
					}
				})
			}
			wg.Wait()
		}
	}
}

func TestCompressStageBuild(t *testing.T) {
	lvl := func(n int) *int { return &n }
	tests := []struct {
		name string
		edit func(*Compress)
		want string // "" builds
	}{
		{"defaults", nil, ""},
		{"nothing offered", func(c *Compress) { c.Encodings = nil }, "encodings: must offer at least one of br, gzip, zstd"},
		{"unknown", func(c *Compress) { c.Encodings = []EncodingOption{{Name: "gzip"}, {Name: "lz4"}} }, `encodings[1].name: must be one of br, gzip, zstd, got "lz4"`},
		{"twice", func(c *Compress) { c.Encodings = []EncodingOption{{Name: "gzip"}, {Name: "GZIP"}} }, `encodings[1].name: "gzip" is offered twice`},
		{"gzip level", func(c *Compress) { c.Encodings = []EncodingOption{{Name: "gzip", Level: lvl(12)}} }, "encodings[0].level: gzip takes 1 to 9, got 12"},
		{"zstd level", func(c *Compress) { c.Encodings = []EncodingOption{{Name: "zstd", Level: lvl(0)}} }, "encodings[0].level: zstd takes 1 to 22, got 0"},
		{"br level", func(c *Compress) { c.Encodings = []EncodingOption{{Name: "br", Level: lvl(12)}} }, "encodings[0].level: br takes 0 to 11, got 12"},
		{"etag", func(c *Compress) { c.ETag = "strip" }, `etag: must be weaken, remove or skip, got "strip"`},
		{"min length", func(c *Compress) { c.MinContentLength = -1 }, "min_content_length: must not be negative, got -1"},
		{"content type", func(c *Compress) { c.ContentTypes = []string{"text"} }, "content_types: "},
		{"skip options", func(c *Compress) { c.MinEstimate = 2 }, "min_estimate: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newCompress()
			if tt.edit != nil {
				tt.edit(&c)
			}
			_, err := c.Build()
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("Build: %v", err)
			case tt.want != "" && (err == nil || !strings.HasPrefix(err.Error(), tt.want)):
				t.Fatalf("Build error %v, want one starting %q", err, tt.want)
			}
		})
	}
}

func TestCompressStageMemory(t *testing.T) {
	spec := compressSpec(t, nil)
	if got := spec.MemoryEstimate(response([]string{"Accept-Encoding: gzip"})); got != spec.encoders["gzip"].memoryEstimate() || got <= 0 {
		t.Errorf("gzip body estimate %d, want the gzip encoder's %d", got, spec.encoders["gzip"].memoryEstimate())
	}
	if got := spec.MemoryEstimate(response([]string{"Accept-Encoding: identity"})); got != 0 {
		t.Errorf("identity body estimate %d, want 0", got)
	}
	// A body encoded on arrival still counts: a decompress step before compress
	// removes the encoding the budget sees.
	if got := spec.MemoryEstimate(response([]string{"Accept-Encoding: gzip"}, "Content-Encoding: zstd")); got != spec.encoders["gzip"].memoryEstimate() {
		t.Errorf("encoded body estimate %d, want the gzip encoder's %d", got, spec.encoders["gzip"].memoryEstimate())
	}
	if got := spec.MemoryEstimate(response(nil)); got != 0 {
		t.Errorf("estimate without request headers %d, want 0", got)
	}
	if got := spec.MemoryEstimate(&stage.Message{Direction: stage.Request, Header: textproto.MIMEHeader{}}); got != spec.encoders["zstd"].memoryEstimate() {
		t.Errorf("request estimate %d, want the first offered coding's", got)
	}
	if got := spec.MemoryEstimate(nil); got < spec.encoders["br"].memoryEstimate() || got < spec.encoders["zstd"].memoryEstimate() {
		t.Errorf("estimate without a message %d is not the largest", got)
	}
}
