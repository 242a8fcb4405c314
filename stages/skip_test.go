package stages

import (
	"fmt"
	"math"
	"net/textproto"
	"reflect"
	"testing"

	"github.com/bodystream/bodystream/stage"
)

func TestCompressorSkips(t *testing.T) {
	json := codecJSON(8 << 10)
	random := codecRandom(8<<10, 8)
	tests := []struct {
		name    string
		options func(*SkipOptions)
		header  textproto.MIMEHeader
		preview []byte
		skip    bool
	}{
		{name: "no headers, no preview"},
		{name: "JSON", header: textproto.MIMEHeader{"Content-Type": {"application/json"}}, preview: json},
		{name: "HTML with charset", header: textproto.MIMEHeader{"Content-Type": {"text/html; charset=utf-8"}}},
		{name: "video by wildcard", header: textproto.MIMEHeader{"Content-Type": {"video/mp4"}}, skip: true},
		{name: "media type in capitals, with parameters", header: textproto.MIMEHeader{"Content-Type": {" Video/MP4 ; codecs=avc1"}}, skip: true},
		{name: "audio", header: textproto.MIMEHeader{"Content-Type": {"audio/ogg"}}, skip: true},
		{name: "png", header: textproto.MIMEHeader{"Content-Type": {"image/png"}}, preview: json, skip: true},
		{name: "svg is text", header: textproto.MIMEHeader{"Content-Type": {"image/svg+xml"}}},
		{name: "zip", header: textproto.MIMEHeader{"Content-Type": {"application/zip"}}, skip: true},
		{name: "octet-stream of text", header: textproto.MIMEHeader{"Content-Type": {"application/octet-stream"}}, preview: json},
		{name: "octet-stream of random bytes", header: textproto.MIMEHeader{"Content-Type": {"application/octet-stream"}}, preview: random, skip: true},
		{name: "already gzip", header: textproto.MIMEHeader{"Content-Encoding": {"gzip"}}, preview: json, skip: true},
		{name: "already br", header: textproto.MIMEHeader{"Content-Encoding": {"br"}}, skip: true},
		{name: "identity encoding", header: textproto.MIMEHeader{"Content-Encoding": {"Identity"}}, preview: json},
		{name: "random preview", preview: random, skip: true},
		{name: "JSON preview", preview: json},
		{name: "empty preview", preview: []byte{}},
		{name: "preview too short to judge", preview: random[:10]},
		{name: "estimate turned off", options: func(o *SkipOptions) { o.PreviewBytes = 0 }, preview: random},
		{
			name:    "looks only at preview_bytes",
			options: func(o *SkipOptions) { o.PreviewBytes = 1 << 10 },
			preview: append(random[:1<<10:1<<10], json...),
			skip:    true,
		},
		{name: "min_estimate 0", options: func(o *SkipOptions) { o.MinEstimate = 0 }, preview: random},
		{
			name:    "configured types replace the defaults",
			options: func(o *SkipOptions) { o.SkipContentTypes = []string{"TEXT/*"} },
			header:  textproto.MIMEHeader{"Content-Type": {"text/plain"}},
			skip:    true,
		},
		{
			name:    "configured types: video is not in them",
			options: func(o *SkipOptions) { o.SkipContentTypes = []string{"text/*"} },
			header:  textproto.MIMEHeader{"Content-Type": {"video/mp4"}},
		},
		{
			name:    "everything",
			options: func(o *SkipOptions) { o.SkipContentTypes = []string{"*/*"} },
			header:  textproto.MIMEHeader{"Content-Type": {"text/plain"}},
			skip:    true,
		},
	}
	for _, c := range codecs {
		for _, tt := range tests {
			t.Run(c.name+"/"+tt.name, func(t *testing.T) {
				spec := codecSpec(t, c, tt.options)
				step, err := spec.Plan(&stage.Message{Header: tt.header}, tt.preview)
				if err != nil {
					t.Fatal(err)
				}
				if skipped := step == (stage.Step{}); skipped != tt.skip {
					t.Errorf("Plan = %+v: skipped %v, want %v", step, skipped, tt.skip)
				}
			})
		}
	}
}

func TestSkipOptionsBuild(t *testing.T) {
	tests := []struct {
		name string
		edit func(*SkipOptions)
		want string
	}{
		{"preview_bytes negative", func(o *SkipOptions) { o.PreviewBytes = -1 }, "preview_bytes: must be between 0 and 1048576, got -1"},
		{"preview_bytes too large", func(o *SkipOptions) { o.PreviewBytes = 2 << 20 }, "preview_bytes: must be between 0 and 1048576, got 2097152"},
		{"min_estimate over 1", func(o *SkipOptions) { o.MinEstimate = 1.5 }, "min_estimate: must be between 0 and 1, got 1.5"},
		{"min_estimate NaN", func(o *SkipOptions) { o.MinEstimate = math.NaN() }, "min_estimate: must be between 0 and 1, got NaN"},
		{"media type without subtype", func(o *SkipOptions) { o.SkipContentTypes = []string{"video"} }, `skip_content_types: "video" is not a media type such as video/mp4, video/* or */*`},
		{"media type with parameters", func(o *SkipOptions) { o.SkipContentTypes = []string{"text/html; charset=utf-8"} }, `skip_content_types: "text/html; charset=utf-8" is not a media type such as video/mp4, video/* or */*`},
	}
	for _, c := range codecs {
		for _, tt := range tests {
			if _, err := c.build(tt.edit); fmt.Sprint(err) != tt.want {
				t.Errorf("%s, %s: Build() = %v, want %q", c.name, tt.name, err, tt.want)
			}
		}
	}
}

func TestCompressorsFromYAML(t *testing.T) {
	tests := []struct {
		name string
		kind string
		yaml string
		want any // the options the built spec holds
	}{
		{
			name: "gzip defaults", kind: "gzip", yaml: "{}",
			want: Gzip{Level: 1, Concurrency: 1, SkipOptions: defaultSkipOptions()},
		},
		{
			name: "gzip options", kind: "gzip",
			yaml: "level: 6\nconcurrency: 4\nskip_content_types: [Text/*, image/png]\npreview_bytes: 0\nmin_estimate: 0.2\n",
			want: Gzip{Level: 6, Concurrency: 4, SkipOptions: SkipOptions{SkipContentTypes: []string{"text/*", "image/png"}, MinEstimate: 0.2}},
		},
		{
			name: "zstd defaults", kind: "zstd", yaml: "{}",
			want: Zstd{Level: "fastest", Window: 1 << 20, Concurrency: 1, SkipOptions: defaultSkipOptions()},
		},
		{
			name: "zstd options, no media types", kind: "zstd",
			yaml: "level: better\nwindow: 262144\nconcurrency: 2\nskip_content_types: []\npreview_bytes: 1024\n",
			want: Zstd{Level: "better", Window: 256 << 10, Concurrency: 2, SkipOptions: SkipOptions{SkipContentTypes: []string{}, PreviewBytes: 1024, MinEstimate: defaultMinEstimate}},
		},
		{
			name: "brotli defaults", kind: "brotli", yaml: "{}",
			want: Brotli{Quality: 3, WindowBits: 18, SkipOptions: defaultSkipOptions()},
		},
		{
			name: "brotli options", kind: "brotli", yaml: "quality: 9\nwindow_bits: 22\nmin_estimate: 0.3\n",
			want: Brotli{Quality: 9, WindowBits: 22, SkipOptions: SkipOptions{SkipContentTypes: defaultSkipContentTypes(), PreviewBytes: defaultPreviewBytes, MinEstimate: 0.3}},
		},
		{name: "identity", kind: "identity", yaml: "{}", want: Identity{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec, err := buildKind(t, tt.kind, yamlOptions(tt.yaml))
			if err != nil {
				t.Fatalf("Build: %v", err)
			}
			if spec.Name() != tt.kind {
				t.Errorf("Name() = %q, want %q", spec.Name(), tt.kind)
			}
			if got := exportedFields(spec); !reflect.DeepEqual(got, exportedFields(tt.want)) {
				t.Errorf("decoded %+v, want %+v", got, exportedFields(tt.want))
			}
			if got, want := spec.PreviewSize(nil), exportedFields(tt.want)["PreviewBytes"]; want != nil && got != want {
				t.Errorf("PreviewSize() = %d, want %v", got, want)
			}
		})
	}
}

// exportedFields flattens the configuration fields of options or of a spec built from
// them, leaving out what Build adds (pools, encoder options).
func exportedFields(spec any) map[string]any {
	fields := map[string]any{}
	var walk func(v reflect.Value)
	walk = func(v reflect.Value) {
		for i := range v.NumField() {
			f := v.Type().Field(i)
			switch {
			case f.Anonymous:
				walk(v.Field(i))
			case f.IsExported():
				fields[f.Name] = v.Field(i).Interface()
			}
		}
	}
	walk(reflect.Indirect(reflect.ValueOf(spec)))
	return fields
}
