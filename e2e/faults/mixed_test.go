package faults

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"sync"
	"testing"

	"github.com/klauspost/compress/gzip"

	"github.com/bodystream/bodystream/internal/harness"
)

// eicar is the antivirus test string, which the scan route refuses.
const eicar = `X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*`

// mixedCase is one kind of upload in the mixed run: its route and body, and the
// status it must get.
type mixedCase struct {
	name   string
	path   string
	header http.Header
	body   func(seed uint64) []byte
	status int
	// rule is the scan rule a 403's JSON must name.
	rule string
}

func randomBytes(seed uint64, n int) []byte {
	b := make([]byte, n)
	rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8)}).Read(b)
	return b
}

func jsonLines(seed uint64, n int) []byte {
	var b bytes.Buffer
	for i := 0; b.Len() < n; i++ {
		fmt.Fprintf(&b, `{"upload": %d, "line": %d, "text": "mixed uploads through Envoy and bodystream"}`+"\n", seed, i)
	}
	return b.Bytes()[:n]
}

var mixedCases = []mixedCase{
	{name: "gzip upstream, full duplex", path: "/full-duplex-streamed/echo", header: http.Header{"Content-Type": {"application/json"}},
		body: func(seed uint64) []byte { return jsonLines(seed, 48<<10) }, status: 200},
	{name: "streamed", path: "/streamed/echo", header: http.Header{"Content-Type": {"video/mp4"}},
		body: func(seed uint64) []byte { return randomBytes(seed, 40<<10) }, status: 200},
	{name: "buffered", path: "/buffered/echo", header: http.Header{"Content-Type": {"application/json"}},
		body: func(seed uint64) []byte { return jsonLines(seed, 32<<10) }, status: 200},
	{name: "archived", path: "/archive/sink", header: http.Header{"Content-Type": {"application/octet-stream"}},
		body: func(seed uint64) []byte { return randomBytes(seed, 8<<10) }, status: 200},
	{name: "scan hit", path: "/scan/sink", header: http.Header{"Content-Type": {"application/octet-stream"}},
		body: func(seed uint64) []byte {
			b := randomBytes(seed, 40<<10)
			copy(b[20000+int(seed%1000):], eicar)
			return b
		}, status: 403, rule: "eicar"},
	{name: "over the limit", path: "/recompress/sink", header: http.Header{"Content-Type": {"application/octet-stream"}},
		body: func(seed uint64) []byte { return randomBytes(seed, 48<<10) }, status: 413},
	{name: "corrupt gzip", path: "/scan/sink", header: http.Header{"Content-Type": {"application/json"}, "Content-Encoding": {"gzip"}},
		body: func(seed uint64) []byte { return corruptGzip(jsonLines(seed, 32<<10)) }, status: 400},
}

// corruptGzip is a gzip stream of data with a byte of its deflate data flipped.
func corruptGzip(data []byte) []byte {
	var b bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&b, gzip.BestSpeed)
	zw.Write(data)
	zw.Close()
	out := b.Bytes()
	out[len(out)/2] ^= 0xff
	return out
}

// TestMixedConcurrentUploads: 300 uploads at once, over both protocols, through every
// body mode, some failing on purpose. Each success is byte-exact (what came back, or
// what the sink reports and the archive holds); each failure has its documented
// status; no 200 is short, and no upstream got a clean end on a failed body.
func TestMixedConcurrentUploads(t *testing.T) {
	s := startStack(t, stackOptions{})
	const uploads = 300
	type outcome struct {
		c      mixedCase
		proto  harness.Protocol
		id     string
		sent   []byte
		status int
		got    []byte
		err    error
	}
	outcomes := make([]outcome, uploads)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range outcomes {
		c := mixedCases[i%len(mixedCases)]
		proto := protocols[(i/len(mixedCases))%len(protocols)]
		o := &outcomes[i]
		*o = outcome{c: c, proto: proto, id: newRequestID(t), sent: c.body(uint64(i))}
		wg.Go(func() {
			<-start
			req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, s.URL+c.path, bytes.NewReader(o.sent))
			if err != nil {
				o.err = err
				return
			}
			req.Header = c.header.Clone()
			req.Header.Set("X-Request-Id", o.id)
			resp, err := s.transports[proto].RoundTrip(req)
			if err != nil {
				o.err = err
				return
			}
			defer resp.Body.Close()
			o.status = resp.StatusCode
			var body io.Reader = resp.Body
			if resp.Header.Get("Content-Encoding") == "gzip" {
				zr, err := gzip.NewReader(resp.Body)
				if err != nil {
					o.err = err
					return
				}
				body = zr
			}
			o.got, o.err = io.ReadAll(body)
		})
	}
	close(start)
	wg.Wait()

	counts := map[string]int{}
	for _, o := range outcomes {
		name := fmt.Sprintf("%s over %s (%s)", o.c.name, o.proto, o.id)
		if o.err != nil {
			t.Errorf("%s: %v", name, o.err)
			continue
		}
		if o.status != o.c.status {
			t.Errorf("%s: status %d %q, want %d", name, o.status, head(o.got), o.c.status)
			continue
		}
		counts[fmt.Sprintf("%s %d", o.c.name, o.status)]++
		switch {
		case o.status != http.StatusOK:
			var answer struct{ Error, Rule string }
			if err := json.Unmarshal(o.got, &answer); err != nil || answer.Error == "" || answer.Rule != o.c.rule {
				t.Errorf("%s: the %d's body %q is not bodystream's JSON error naming rule %q", name, o.status, head(o.got), o.c.rule)
			}
			s.checkNoCleanTruncation(t, o.id, nil)
		case bytes.HasSuffix([]byte(o.c.path), []byte("/sink")):
			var report struct {
				Bytes  int64
				SHA256 string
			}
			if err := json.Unmarshal(o.got, &report); err != nil || report.Bytes != int64(len(o.sent)) || report.SHA256 != sha256Hex(o.sent) {
				t.Errorf("%s: the upstream's report %q is not the %d bytes sent", name, head(o.got), len(o.sent))
			}
			if o.c.name == "archived" {
				sum := sha256.Sum256(o.sent)
				s.checkArchived(t, o.id, int64(len(o.sent)), sum[:], true)
			}
		default:
			if !bytes.Equal(o.got, o.sent) {
				t.Errorf("%s: 200 with %d bytes back, sent %d: not byte-exact", name, len(o.got), len(o.sent))
			}
		}
	}
	t.Logf("outcomes: %v", counts)
	s.checkNoLeak(t)
}

func head(b []byte) []byte { return b[:min(len(b), 200)] }
