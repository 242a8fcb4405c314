package stages

import (
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/bodystream/bodystream/stage"
)

func hashBody(t *testing.T, spec stage.Spec, d stage.Direction, chunks [][]byte) stage.Result {
	t.Helper()
	step, err := spec.Plan(&stage.Message{Direction: d, RequestID: "id"}, nil)
	if err != nil {
		t.Fatalf("Plan: %v", err)
	}
	if step.Observer == nil || step.Transformer != nil {
		t.Fatalf("Plan = %+v, want an observer", step)
	}
	for _, c := range chunks {
		if n, err := step.Observer.Write(c); n != len(c) || err != nil {
			t.Fatalf("Write = %d, %v", n, err)
		}
	}
	res, err := step.Observer.Finish()
	if err != nil {
		t.Fatalf("Finish: %v", err)
	}
	return res
}

func TestHashDigestAnyChunking(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	body := make([]byte, 100_000)
	for i := range body {
		body[i] = byte(rng.Uint32())
	}
	sum := sha256.Sum256(body)
	want := hex.EncodeToString(sum[:])
	chunkings := map[string][][]byte{
		"whole":             {body},
		"halves":            {body[:50_000], body[50_000:]},
		"with empty chunks": {nil, body[:1], {}, body[1:77_777], body[77_777:], nil},
	}
	var random [][]byte
	for rest := body; len(rest) > 0; {
		n := min(len(rest), rng.IntN(20_000))
		random = append(random, rest[:n])
		rest = rest[n:]
	}
	chunkings["random"] = random
	var small [][]byte
	for rest := body[:1000]; len(rest) > 0; rest = rest[1:] {
		small = append(small, rest[:1])
	}
	smallSum := sha256.Sum256(body[:1000])

	spec := built(t, HashSpec{}, nil)
	for name, chunks := range chunkings {
		res := hashBody(t, spec, stage.Request, chunks)
		if got := res.Metadata["request_sha256"]; got != want {
			t.Errorf("%s: request_sha256 = %q, want %q", name, got, want)
		}
	}
	if got := hashBody(t, spec, stage.Request, small).Metadata["request_sha256"]; got != hex.EncodeToString(smallSum[:]) {
		t.Errorf("bytewise: request_sha256 = %q", got)
	}
	empty := sha256.Sum256(nil)
	if got := hashBody(t, spec, stage.Response, nil).Metadata["response_sha256"]; got != hex.EncodeToString(empty[:]) {
		t.Errorf("empty body: response_sha256 = %q", got)
	}
}

func TestHashOutputs(t *testing.T) {
	body := []byte("the quick brown fox")
	digest := map[string]string{}
	s256, s512, s1, m5 := sha256.Sum256(body), sha512.Sum512(body), sha1.Sum(body), md5.Sum(body)
	digest["sha256"], digest["sha512"] = hex.EncodeToString(s256[:]), hex.EncodeToString(s512[:])
	digest["sha1"], digest["md5"] = hex.EncodeToString(s1[:]), hex.EncodeToString(m5[:])

	tests := []struct {
		name string
		spec HashSpec
		dir  stage.Direction
		want map[string]string // metadata key -> algorithm
		// header (and trailer) key -> algorithm
		wantHeaders map[string]string
	}{
		{
			name:        "default request",
			dir:         stage.Request,
			want:        map[string]string{"request_sha256": "sha256"},
			wantHeaders: map[string]string{"x-bodystream-request-sha256": "sha256"},
		},
		{
			name:        "default response",
			dir:         stage.Response,
			want:        map[string]string{"response_sha256": "sha256"},
			wantHeaders: map[string]string{"x-bodystream-response-sha256": "sha256"},
		},
		{
			name: "all algorithms",
			spec: HashSpec{Algorithms: []string{"sha512", "SHA256", "sha1", "md5"}},
			dir:  stage.Response,
			want: map[string]string{"response_sha512": "sha512", "response_sha256": "sha256", "response_sha1": "sha1", "response_md5": "md5"},
			wantHeaders: map[string]string{
				"x-bodystream-response-sha512": "sha512", "x-bodystream-response-sha256": "sha256",
				"x-bodystream-response-sha1": "sha1", "x-bodystream-response-md5": "md5",
			},
		},
		{
			name:        "name and header",
			spec:        HashSpec{Algorithms: []string{"sha256", "md5"}, Label: "raw_sha256", Header: "X-Digest"},
			dir:         stage.Request,
			want:        map[string]string{"request_raw_sha256": "sha256", "request_md5": "md5"},
			wantHeaders: map[string]string{"x-digest-request-raw_sha256": "sha256", "x-digest-request-md5": "md5"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := hashBody(t, built(t, tt.spec, nil), tt.dir, [][]byte{body[:5], body[5:]})
			check := func(what string, got, want map[string]string) {
				if len(got) != len(want) {
					t.Errorf("%s = %v, want keys %v", what, got, want)
				}
				for key, algo := range want {
					if got[key] != digest[algo] {
						t.Errorf("%s[%q] = %q, want the %s digest %q", what, key, got[key], algo, digest[algo])
					}
				}
			}
			check("Metadata", res.Metadata, tt.want)
			check("Headers", res.Headers, tt.wantHeaders)
			check("Trailers", res.Trailers, tt.wantHeaders)
		})
	}
}

func TestHashBuild(t *testing.T) {
	tests := []struct {
		name    string
		spec    HashSpec
		wantErr string
	}{
		{name: "defaults", spec: HashSpec{}},
		{name: "unknown algorithm", spec: HashSpec{Algorithms: []string{"sha256", "crc32"}}, wantErr: "algorithms[1]: "},
		{name: "duplicate algorithm", spec: HashSpec{Algorithms: []string{"md5", "MD5"}}, wantErr: "algorithms[1]: "},
		{name: "bad name", spec: HashSpec{Label: "a b"}, wantErr: "name: "},
		{name: "upper-case name", spec: HashSpec{Label: "Digest"}, wantErr: "name: "},
		{name: "bad header", spec: HashSpec{Header: "x_digest:"}, wantErr: "header: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec, err := tt.spec.Build()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				// The defaults: sha256 alone, labelled sha256, under x-bodystream.
				for _, d := range []stage.Direction{stage.Request, stage.Response} {
					outs := spec.(*hashPlanner).outputs[d]
					want := hashOutput{metadataKey: d.String() + "_sha256", headerKey: "x-bodystream-" + d.String() + "-sha256"}
					if len(outs) != 1 || outs[0].metadataKey != want.metadataKey || outs[0].headerKey != want.headerKey {
						t.Fatalf("%s outputs %+v, want one with keys %q and %q", d, outs, want.metadataKey, want.headerKey)
					}
					if got, empty := outs[0].newHash().Sum(nil), sha256.Sum256(nil); string(got) != string(empty[:]) {
						t.Fatalf("%s digest of nothing = %x, want sha256's %x", d, got, empty)
					}
				}
				return
			}
			if err == nil || !strings.HasPrefix(err.Error(), tt.wantErr) {
				t.Fatalf("Build = %v, want an error starting with %q", err, tt.wantErr)
			}
		})
	}
}

func TestHashYAML(t *testing.T) {
	spec, err := buildKind(t, "hash", yamlOptions("algorithms: [sha1]\nname: legacy\nheader: x-sum\n"))
	if err != nil {
		t.Fatal(err)
	}
	res := hashBody(t, spec, stage.Request, [][]byte{[]byte("x")})
	sum := sha1.Sum([]byte("x"))
	if got := res.Headers["x-sum-request-legacy"]; got != hex.EncodeToString(sum[:]) {
		t.Fatalf("headers %v", res.Headers)
	}
}

func TestHashWriteDoesNotAllocate(t *testing.T) {
	spec := built(t, HashSpec{Algorithms: []string{"sha256", "sha512", "sha1", "md5"}}, nil)
	step, err := spec.Plan(&stage.Message{Direction: stage.Request}, nil)
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 16<<10)
	if allocs := testing.AllocsPerRun(100, func() { step.Observer.Write(chunk) }); allocs != 0 {
		t.Errorf("%v allocations per Write", allocs)
	}
}
