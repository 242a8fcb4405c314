package e2e

import (
	"bytes"
	"compress/gzip"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/andybalholm/brotli"
)

func gzipped(t *testing.T, data []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	w := gzip.NewWriter(&b)
	w.Write(data)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func brotlied(t *testing.T, data []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	w := brotli.NewWriterOptions(&b, brotli.WriterOptions{Quality: 4, LGWin: 22})
	w.Write(data)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// TestE2ERecompress: a gzip upload reaches the upstream as zstd, and the echo's zstd
// response reaches the client as gzip.
func TestE2ERecompress(t *testing.T) {
	s := needStack(t)
	plain := textBody(t, 3<<20)
	t.Run("gzip upload becomes zstd upstream", func(t *testing.T) {
		got := post(t, s.URL+"/recompress/sink", gzipped(t, plain), map[string]string{"Content-Encoding": "gzip", "Content-Type": "application/json"})
		if report := report(t, got); report.ContentEncoding != "zstd" {
			t.Fatalf("upstream content-encoding %q, want zstd", report.ContentEncoding)
		}
	})
	t.Run("zstd response becomes gzip for the client", func(t *testing.T) {
		got := post(t, s.URL+"/recompress/echo", gzipped(t, plain), map[string]string{"Content-Encoding": "gzip", "Content-Type": "application/json", "Accept-Encoding": "gzip"})
		if got.Status != 200 || got.Encoding != "gzip" {
			t.Fatalf("status %d, content-encoding %q: want 200 gzip", got.Status, got.Encoding)
		}
		if hex.EncodeToString(got.Sum) != sha(plain) {
			t.Fatal("the response does not decode to the upload")
		}
	})
}

// TestE2EBadInput: each bad body gets its status, named in a JSON body, and the
// upstream request is reset rather than completed.
func TestE2EBadInput(t *testing.T) {
	s := needStack(t)
	eicar := []byte(`X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-` + `TEST-FILE!$H+H*`)
	withVirus := append(append(textBody(t, 4<<20), eicar...), textBody(t, 4<<20)...)
	var bomb bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&bomb, gzip.BestSpeed)
	zeros := make([]byte, 1<<20)
	for range 300 {
		zw.Write(zeros)
	}
	zw.Close()
	corrupt := gzipped(t, textBody(t, 1<<20))
	corrupt[len(corrupt)/2] ^= 0xff
	truncatedBrotli := brotlied(t, textBody(t, 1<<20))
	truncatedBrotli = truncatedBrotli[:len(truncatedBrotli)/2]
	cases := []struct {
		name   string
		body   []byte
		header map[string]string
		status int
		error  string
		reason string // of bodystream_immediate_responses_total
	}{
		{"scan hit mid-body", withVirus, nil, 403, `"rule":"eicar"`, "scan_rule"},
		{"executable disguised as video", append([]byte("MZ\x90\x00"), textBody(t, 1<<20)...), map[string]string{"Content-Type": "video/mp4"}, 403, `"rule":"windows-executable-as-media"`, "scan_rule"},
		{"decompression bomb", bomb.Bytes(), map[string]string{"Content-Encoding": "gzip"}, 413, "body too large", "bomb"},
		{"corrupt gzip", corrupt, map[string]string{"Content-Encoding": "gzip"}, 400, "corrupt body", "corrupt_input"},
		{"truncated brotli", truncatedBrotli, map[string]string{"Content-Encoding": "br"}, 400, "corrupt body", "corrupt_input"},
		{"unsupported encoding", []byte("abc"), map[string]string{"Content-Encoding": "compress"}, 415, "unsupported content-encoding", "unsupported_encoding"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resetsBefore := envoyStat(t, s, "cluster.echo.upstream_rq_tx_reset")
			counter := fmt.Sprintf(`bodystream_immediate_responses_total{reason=%q,status="%d"}`, tc.reason, tc.status)
			countedBefore := scrape(t, s)[counter]
			got := post(t, s.URL+"/scan/sink", tc.body, tc.header)
			data := got.Head
			if got.Status != tc.status || !strings.Contains(string(data), tc.error) {
				t.Fatalf("status %d %q, want %d containing %s", got.Status, data, tc.status, tc.error)
			}
			if !json.Valid(data) {
				t.Errorf("error body is not JSON: %q", data)
			}
			if counted := scrape(t, s)[counter] - countedBefore; counted != 1 {
				t.Errorf("%s grew by %v, want 1", counter, counted)
			}
			if tc.status == 403 && len(tc.body) > 1<<20 {
				// Part of the body went upstream before the match: Envoy must reset
				// that request, not complete it.
				if after := envoyStat(t, s, "cluster.echo.upstream_rq_tx_reset"); after <= resetsBefore {
					t.Errorf("upstream request was not reset (upstream_rq_tx_reset %d -> %d)", resetsBefore, after)
				}
			}
		})
	}
}

// TestE2EDigestHeader: the request body's SHA-256 (of the decoded body) comes back as
// a response header, because the upstream read it all before answering.
func TestE2EDigestHeader(t *testing.T) {
	s := needStack(t)
	plain := textBody(t, 2<<20)
	for _, tc := range []struct {
		name   string
		body   []byte
		header map[string]string
	}{
		{"plain", plain, nil},
		{"gzip, digest of the decoded body", gzipped(t, plain), map[string]string{"Content-Encoding": "gzip"}},
		{"brotli, digest of the decoded body", brotlied(t, plain), map[string]string{"Content-Encoding": "br"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := post(t, s.URL+"/scan/sink", tc.body, tc.header)
			if got := resp.Header.Get("X-Bodystream-Request-Sha256"); got != sha(plain) {
				t.Fatalf("x-bodystream-request-sha256 %q, want %s", got, sha(plain))
			}
		})
	}
}

// TestE2EArchive: a complete upload leaves exactly one file with its bytes, named
// after its request id; an upload the client abandons leaves nothing.
func TestE2EArchive(t *testing.T) {
	s := needStack(t)
	t.Run("complete", func(t *testing.T) {
		plain := textBody(t, 5<<20)
		if got := post(t, s.URL+"/archive/sink", plain, map[string]string{"X-Request-Id": "e2e-complete/../x"}); got.Status != 200 {
			t.Fatalf("status %d", got.Status)
		}
		path := filepath.Join(archiveDir, "e2e-complete_.._x.request.body")
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("archived file: %v (dir has %v)", err, listDir(archiveDir))
		}
		if sha(data) != sha(plain) {
			t.Fatal("archived file differs from the upload")
		}
	})
	t.Run("client hangs up mid-upload", func(t *testing.T) {
		conn, err := net.Dial("tcp", strings.TrimPrefix(s.URL, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		head := "POST /archive/sink HTTP/1.1\r\nHost: x\r\nX-Request-Id: e2e-abandoned\r\nContent-Length: 10000000\r\n\r\n"
		conn.Write([]byte(head))
		conn.Write(textBody(t, 1<<20))
		conn.Close()
		// bodystream learns of the hang-up from Envoy's reset, in another process:
		// poll the directory until the partial file is gone, for at most 10 s.
		deadline := time.Now().Add(10 * time.Second)
		for {
			leftovers := matching(archiveDir, "e2e-abandoned")
			if len(leftovers) == 0 && envoyStat(t, s, "http.ingress.downstream_cx_destroy_remote_active_rq") > 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("partial files left behind: %v", leftovers)
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
}

func listDir(dir string) []string {
	entries, _ := os.ReadDir(dir)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// matching lists files (temporary ones included) whose name mentions id.
func matching(dir, id string) []string {
	var found []string
	for _, name := range listDir(dir) {
		if strings.Contains(name, id) {
			found = append(found, name)
		}
	}
	return found
}
