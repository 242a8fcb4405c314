package e2e

import (
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/zstd"

	"github.com/bodystream/bodystream/internal/harness"

	"github.com/bodystream/bodystream/internal/respondbody"
)

// The parity test runs one matrix of requests through one Envoy 1.40 with four
// routes to the echo's respond endpoint (testdata/parity-envoy.yaml): /envoy/ is
// compressed by Envoy's own compressor filters (zstd, brotli, gzip);
// /bodystream-fd/, /bodystream-streamed/ and /bodystream-buffered/ by bodystream's
// compress stage configured alike, in the FULL_DUPLEX_STREAMED, STREAMED and
// BUFFERED response body modes. Each cell compares what the routes decided:
// compressed or not, content-encoding, vary, etag, content-length present. Where
// bodystream deliberately differs (README "Compression"), the cell says so and the
// test asserts the difference.

// outcome is what a route decided for one request.
type outcome struct {
	Status               int
	Encoding, Vary, ETag string
	HasLength            bool
}

// difference is one way bodystream deliberately answers differently from Envoy's
// compressor: it turns Envoy's outcome into what bodystream must send. route is
// "fd", "streamed" or "buffered".
type difference func(route string, envoy outcome) outcome

var (
	// Envoy removes a strong ETag from a compressed response; bodystream weakens it,
	// which keeps conditional requests working (etag: weaken, the default).
	etagWeakened = func(tag string) difference {
		return func(_ string, o outcome) outcome { o.ETag = "W/" + tag; return o }
	}
	// Envoy compares coding names case-sensitively; RFC 9110 says they are not.
	caseInsensitive = func(coding string) difference {
		return func(_ string, o outcome) outcome { o.Encoding, o.HasLength = coding, false; return o }
	}
	// Among codings of equal weight Envoy takes the client's first; bodystream the
	// route's first (its order is the operator's preference).
	routeOrderWins = caseInsensitive
	// HEAD, 204 and 304 responses have no body to encode; bodystream leaves them
	// untouched, where Envoy still adds Vary.
	untouched = func(_ string, o outcome) outcome { o.Vary = ""; return o }
	// Envoy compresses a 206 part as if it were the whole body; bodystream leaves a
	// range untouched (a compressed part of an uncompressed representation is no
	// valid range of anything).
	rangeUntouched = func(_ string, o outcome) outcome { o.Encoding, o.Vary, o.HasLength = "", "", true; return o }
	// In FULL_DUPLEX_STREAMED and BUFFERED bodystream looks at the first bytes and
	// does not compress random data; it still says Vary. STREAMED mode has no
	// preview, so it compresses as Envoy does.
	previewSkip = func(route string, o outcome) outcome {
		if route != "streamed" {
			o.Encoding, o.HasLength = "", true
		}
		return o
	}
)

// bodyModeLength is what the body mode does to content-length, whatever bodystream
// decides: Envoy's ext_proc filter drops it from every response it streams to its
// server (FULL_DUPLEX_STREAMED, STREAMED); in BUFFERED mode bodystream knows the
// compressed length and sets it, where Envoy's compressor, which streams, drops it.
func bodyModeLength(route string, o outcome, compressedByUs bool) outcome {
	switch {
	case route != "buffered":
		o.HasLength = false
	case compressedByUs:
		o.HasLength = true
	}
	return o
}

type parityCase struct {
	name   string
	method string  // GET when empty
	accept *string // nil: no Accept-Encoding
	query  string  // the respond query, size and headers
	random bool    // fill=random
	// want is the content-encoding bodystream must send (FULL_DUPLEX_STREAMED), an
	// absolute check beside the comparison with Envoy.
	want string
	// differs, when set, is the deliberate difference from Envoy.
	differs difference
}

func ae(v string) *string { return &v }

var parityCases = func() []parityCase {
	const text = "size=1000&header=Content-Type:text/plain"
	gz := ae("gzip")
	return []parityCase{
		// Accept-Encoding.
		{name: "accept absent", query: text, want: ""},
		{name: "accept empty", accept: ae(""), query: text, want: ""},
		{name: "gzip", accept: gz, query: text, want: "gzip"},
		{name: "br preferred", accept: ae("br;q=1, gzip;q=0.5"), query: text, want: "br"},
		{name: "gzip refused", accept: ae("gzip;q=0"), query: text, want: ""},
		{name: "wildcard", accept: ae("*"), query: text, want: "zstd"},
		{name: "identity", accept: ae("identity"), query: text, want: ""},
		{name: "nothing acceptable", accept: ae("identity;q=0, *;q=0"), query: text, want: ""},
		{name: "unknown tokens", accept: ae("lz4, snappy"), query: text, want: ""},
		{name: "unknown and gzip", accept: ae("lz4;q=0.9, gzip;q=0.2"), query: text, want: "gzip"},
		{name: "odd spacing", accept: ae("  gzip ;q=0.3 ,   br ; q=0.9  "), query: text, want: "br"},
		{name: "upper case", accept: ae("GZIP"), query: text, want: "gzip", differs: caseInsensitive("gzip")},
		{name: "equal weights", accept: ae("gzip, br"), query: text, want: "br", differs: routeOrderWins("br")},
		// Sizes around min_content_length (30), and an unknown length.
		{name: "29 bytes", accept: gz, query: "size=29&header=Content-Type:text/plain", want: ""},
		{name: "30 bytes", accept: gz, query: "size=30&header=Content-Type:text/plain", want: "gzip"},
		{name: "10 bytes, length unknown", accept: gz, query: "size=10&chunked=1&header=Content-Type:text/plain", want: "gzip"},
		// Content types.
		{name: "json with charset", accept: gz, query: "size=1000&header=Content-Type:application/json%3B+charset=utf-8", want: "gzip"},
		{name: "png", accept: gz, query: "size=1000&header=Content-Type:image/png", want: ""},
		{name: "octet-stream not listed", accept: gz, query: "size=1000&header=Content-Type:application/octet-stream", want: ""},
		{name: "no content-type", accept: gz, query: "size=1000", want: "gzip"},
		// ETag, Cache-Control, Content-Encoding, Vary.
		{name: "strong etag", accept: gz, query: text + `&header=ETag:"v1"`, want: "gzip", differs: etagWeakened(`"v1"`)},
		{name: "weak etag", accept: gz, query: text + `&header=ETag:W/"v1"`, want: "gzip"},
		{name: "strong etag, identity", accept: ae("identity"), query: text + `&header=ETag:"v1"`, want: ""},
		{name: "no-transform", accept: gz, query: text + "&header=Cache-Control:public,+no-transform", want: ""},
		{name: "other cache-control", accept: gz, query: text + "&header=Cache-Control:max-age=60", want: "gzip"},
		{name: "already encoded", accept: gz, query: text + "&header=Content-Encoding:deflate", want: "deflate"},
		{name: "vary merged", accept: gz, query: text + "&header=Vary:Origin", want: "gzip"},
		// Responses without a body to encode, and ranges.
		{name: "HEAD", method: http.MethodHead, accept: gz, query: text, want: "", differs: untouched},
		{name: "204", accept: gz, query: "status=204&header=Content-Type:text/plain", want: "", differs: untouched},
		{name: "304", accept: gz, query: `status=304&header=ETag:"v1"`, want: "", differs: untouched},
		{name: "206", accept: gz, query: text + "&status=206&header=Content-Range:bytes+0-999/5000", want: "", differs: rangeUntouched},
		// What the preview sees.
		{name: "random bytes", accept: gz, query: "size=4000&header=Content-Type:text/plain", random: true, want: "", differs: previewSkip},
	}
}()

func TestE2ECompressionParity(t *testing.T) {
	harness.RequireEnvoy(t)
	root, err := harness.FindRoot()
	if err != nil {
		t.Fatal(err)
	}
	opts := harness.Options{
		Root: root, Dir: t.TempDir(),
		EnvoyConfig:    filepath.Join(root, "e2e", "testdata", "parity-envoy.yaml"),
		BodystreamArgs: []string{"-config", filepath.Join(root, "e2e", "testdata", "parity-bodystream.yaml")},
	}
	if running != nil {
		opts.BinDir = running.Dir // built once for the package
	}
	stack, err := harness.Start(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := stack.Stop(); err != nil {
			t.Error(err)
		}
		if t.Failed() {
			t.Log(stack.Logs(60))
		}
	})
	client := &http.Client{Transport: &http.Transport{DisableCompression: true}}
	t.Cleanup(client.CloseIdleConnections)

	for _, c := range parityCases {
		t.Run(c.name, func(t *testing.T) {
			query := c.query
			if c.random {
				query += "&fill=random"
			}
			envoy := parityRequest(t, client, c, stack.URL+"/envoy/respond?"+query)
			differed := false
			for _, route := range []string{"fd", "streamed", "buffered"} {
				got := parityRequest(t, client, c, stack.URL+"/bodystream-"+route+"/respond?"+query)
				want := envoy
				if c.differs != nil {
					want = c.differs(route, envoy)
					differed = differed || want != envoy
				}
				upstreamEncoded := strings.Contains(c.query, "Content-Encoding:")
				want = bodyModeLength(route, want, want.Encoding != "" && !upstreamEncoded)
				if got != want {
					t.Errorf("%s: bodystream %+v, want %+v (Envoy %+v)", route, got, want, envoy)
				}
				if route == "fd" && got.Encoding != c.want {
					t.Errorf("fd: content-encoding %q, want %q", got.Encoding, c.want)
				}
			}
			if c.differs != nil && !differed {
				t.Errorf("listed as a difference, but Envoy answered what bodystream must: %+v", envoy)
			}
		})
	}
}

// parityRequest sends c to url, checks that the body decodes to what the echo sent,
// and returns the route's decision.
func parityRequest(t *testing.T, client *http.Client, c parityCase, target string) outcome {
	t.Helper()
	method := c.method
	if method == "" {
		method = http.MethodGet
	}
	req, err := http.NewRequestWithContext(t.Context(), method, target, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.accept != nil {
		req.Header["Accept-Encoding"] = []string{*c.accept}
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, target, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the body: %v", method, target, err)
	}
	o := outcome{
		Status:    resp.StatusCode,
		Encoding:  resp.Header.Get("Content-Encoding"),
		Vary:      strings.Join(resp.Header.Values("Vary"), ", "),
		ETag:      resp.Header.Get("Etag"),
		HasLength: resp.Header.Get("Content-Length") != "",
	}

	var want []byte
	if resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusPartialContent {
		want = respondbody.Body(sizeOf(t, c.query), c.random)
	}
	if method == http.MethodHead {
		want = nil
	}
	got, err := decodeAs(o.Encoding, raw)
	if strings.Contains(c.query, "Content-Encoding:") { // the echo's own label: passed as it is
		got, err = raw, nil
	}
	if err != nil || !bytes.Equal(got, want) {
		t.Errorf("%s: body of %d bytes in %q decodes to %d bytes (%v), want the %d the echo sent", target, len(raw), o.Encoding, len(got), err, len(want))
	}
	return o
}

func sizeOf(t *testing.T, query string) int {
	t.Helper()
	values, err := url.ParseQuery(query)
	if err != nil {
		t.Fatal(err)
	}
	if values.Get("size") == "" {
		return 0
	}
	n, err := strconv.Atoi(values.Get("size"))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func decodeAs(encoding string, b []byte) ([]byte, error) {
	switch encoding {
	case "":
		return b, nil
	case "gzip":
		zr, err := gzip.NewReader(bytes.NewReader(b))
		if err != nil {
			return nil, err
		}
		return io.ReadAll(zr)
	case "br":
		return io.ReadAll(brotli.NewReader(bytes.NewReader(b)))
	case "zstd":
		dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, err
		}
		defer dec.Close()
		return dec.DecodeAll(b, nil)
	}
	return nil, io.ErrUnexpectedEOF
}
