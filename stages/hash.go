package stages

import (
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"fmt"
	"hash"
	"slices"
	"strings"

	"github.com/bodystream/bodystream/stage"
)

// The "hash" observer digests a body as it streams by and reports the hex digest in
// the dynamic metadata, a header and a trailer.

func init() {
	register("hash", func() HashSpec { return HashSpec{} })
}

// hashAlgorithms are the digests a hash step can compute. md5 and sha1 are broken as
// cryptographic hashes; they are offered only for compatibility with systems that
// still expect them (an S3 Content-MD5, a legacy checksum), never for integrity
// against an adversary.
var hashAlgorithms = map[string]func() hash.Hash{
	"sha256": sha256.New,
	"sha512": sha512.New,
	"sha1":   sha1.New,
	"md5":    md5.New,
}

// HashSpec configures the "hash" observer.
//
//	kind: hash
//	algorithms: [sha256, md5]  # default [sha256]; md5 and sha1 for compatibility only
//	name: raw_sha256           # label of the first algorithm's outputs (default: its name)
//	header: x-digest           # header and trailer name prefix (default x-bodystream)
//
// For a request body with the defaults, the result is metadata request_sha256, header
// and trailer x-bodystream-request-sha256. The first algorithm's outputs carry name,
// the others their algorithm's name, so that two hash steps in one pipeline (before and
// after a compressor, say) can be told apart by naming one of them.
type HashSpec struct {
	Algorithms []string `yaml:"algorithms"`
	Label      string   `yaml:"name"` // Name is the Spec method
	Header     string   `yaml:"header"`
}

// hashPlanner is a built hash step.
type hashPlanner struct {
	outputs [2][]hashOutput // by Direction
}

// hashOutput is one algorithm's output keys for one direction.
type hashOutput struct {
	newHash     func() hash.Hash
	metadataKey string // "request_sha256"
	headerKey   string // "x-bodystream-request-sha256", also the trailer's name
}

func (p *hashPlanner) Name() string { return "hash" }

func (p *hashPlanner) PreviewSize(*stage.Message) int { return 0 }

// Build fills in the defaults, checks the algorithms and names, and builds the output
// keys once so that no body builds strings.
func (s HashSpec) Build() (stage.Spec, error) {
	s.Algorithms = slices.Clone(s.Algorithms)
	if len(s.Algorithms) == 0 {
		s.Algorithms = []string{"sha256"}
	}
	seen := make(map[string]bool, len(s.Algorithms))
	for i, algo := range s.Algorithms {
		algo = strings.ToLower(strings.TrimSpace(algo))
		if hashAlgorithms[algo] == nil {
			return nil, fmt.Errorf("algorithms[%d]: unknown algorithm %q (want sha256, sha512, sha1 or md5)", i, s.Algorithms[i])
		}
		if seen[algo] {
			return nil, fmt.Errorf("algorithms[%d]: %q is listed twice", i, algo)
		}
		seen[algo] = true
		s.Algorithms[i] = algo
	}
	if s.Label == "" {
		s.Label = s.Algorithms[0]
	}
	if !isHashLabel(s.Label, "_") {
		return nil, fmt.Errorf("name: must be lower-case letters, digits, '-' and '_', got %q", s.Label)
	}
	if s.Header == "" {
		s.Header = "x-bodystream"
	}
	s.Header = strings.ToLower(s.Header)
	if !isHashLabel(s.Header, "") {
		return nil, fmt.Errorf("header: must be a header name of letters, digits and '-', got %q", s.Header)
	}
	p := &hashPlanner{}
	for _, d := range []stage.Direction{stage.Request, stage.Response} {
		outs := make([]hashOutput, len(s.Algorithms))
		for i, algo := range s.Algorithms {
			label := algo
			if i == 0 {
				label = s.Label
			}
			outs[i] = hashOutput{
				newHash:     hashAlgorithms[algo],
				metadataKey: d.String() + "_" + label,
				headerKey:   s.Header + "-" + d.String() + "-" + label,
			}
		}
		p.outputs[d] = outs
	}
	return p, nil
}

// isHashLabel reports whether v is non-empty and made of a-z, 0-9, '-' and extra.
func isHashLabel(v, extra string) bool {
	if v == "" {
		return false
	}
	for _, c := range v {
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || strings.ContainsRune(extra, c)) {
			return false
		}
	}
	return true
}

// Plan starts the digests of one body.
func (p *hashPlanner) Plan(m *stage.Message, _ []byte) (stage.Step, error) {
	if m.Direction != stage.Request && m.Direction != stage.Response {
		return stage.Step{}, fmt.Errorf("hash: unknown direction %d", m.Direction)
	}
	outs := p.outputs[m.Direction]
	o := &hashObserver{outputs: outs, hashes: make([]hash.Hash, len(outs))}
	for i, out := range outs {
		o.hashes[i] = out.newHash()
	}
	return stage.Step{Observer: o}, nil
}

// hashObserver digests one body.
type hashObserver struct {
	outputs []hashOutput
	hashes  []hash.Hash // one per output
}

// Write feeds every digest; a hash.Hash never fails nor retains p.
func (o *hashObserver) Write(p []byte) (int, error) {
	for _, h := range o.hashes {
		h.Write(p)
	}
	return len(p), nil
}

// Finish reports the digests in hex.
func (o *hashObserver) Finish() (stage.Result, error) {
	r := stage.Result{
		Metadata: make(map[string]string, len(o.hashes)),
		Headers:  make(map[string]string, len(o.hashes)),
		Trailers: make(map[string]string, len(o.hashes)),
	}
	for i, h := range o.hashes {
		digest := hex.EncodeToString(h.Sum(nil))
		out := o.outputs[i]
		r.Metadata[out.metadataKey] = digest
		r.Headers[out.headerKey] = digest
		r.Trailers[out.headerKey] = digest
	}
	return r, nil
}

// Abort has nothing to release.
func (o *hashObserver) Abort() {}
