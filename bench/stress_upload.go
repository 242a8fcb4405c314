package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"time"

	"github.com/bodystream/bodystream/internal/harness"
)

// A stress upload's outcome. Only outcomeBad fails a run.
const (
	outcomeOK      = "ok"      // 200, and the body came back byte-exact after decoding
	outcomeFailed  = "failed"  // an error status, or a transport error the client saw
	outcomeAborted = "aborted" // the client hung up on purpose
	outcomeBad     = "bad"     // a body that ended cleanly but is not what was sent
)

// stressPlan is one upload of a stress run, drawn at random.
type stressPlan struct {
	ID       string           `json:"id"`
	Mode     string           `json:"mode"`  // fds, streamed, buffered: Envoy's body mode
	Codec    string           `json:"codec"` // gzip, zstd, identity: the request pipeline
	Protocol harness.Protocol `json:"protocol"`
	// Framing is how the request body is sent: length (content-length), chunked
	// (no length: chunked on HTTP/1.1, DATA frames on h2) or trickle (chunked, in
	// small pieces with pauses).
	Framing string           `json:"framing"`
	Kind    harness.BodyKind `json:"kind"`
	Size    int64            `json:"size"`
	Seed    uint64           `json:"seed"`
	// Abort is "" or where the client hangs up: "upload" after AbortAt body bytes
	// went out, "response" after AbortAt response bytes came in.
	Abort   string `json:"abort,omitempty"`
	AbortAt int64  `json:"abort_at,omitempty"`
}

// path is the request path: Envoy routes by the mode, bodystream by mode and codec.
func (p stressPlan) path() string { return "/" + p.Mode + "/" + p.Codec + "/echo" }

// stressSizes are the body sizes a run draws from: empty, tiny, around the chunk size
// (16 KiB), around Envoy's buffers and the buffered limit (4 MiB), and large; those
// above the run's largest size are left out.
var stressSizes = []int64{0, 1, 1000, 16<<10 - 1, 16<<10 + 1, 100_000, 1 << 20, 3<<20 + 123, 4<<20 + 1, 8 << 20, 16 << 20, 64 << 20}

// trickleMax bounds trickled bodies: they take about a second per 200 KiB.
const trickleMax = 256 << 10

// drawPlan draws upload number i of a run.
func drawPlan(rng *rand.Rand, run uint64, i int, maxSize int64) stressPlan {
	pick := func(options ...string) string { return options[rng.IntN(len(options))] }
	p := stressPlan{
		ID:       fmt.Sprintf("stress-%d-%d", run, i),
		Mode:     pick("fds", "fds", "streamed", "buffered"),
		Codec:    pick("gzip", "zstd", "identity"),
		Protocol: harness.Protocol(pick(string(harness.H1), string(harness.H2))),
		Framing:  pick("length", "length", "chunked", "trickle"),
		Kind:     harness.BodyKind(pick(string(harness.BodyRandom), string(harness.BodyJSON), string(harness.BodyJSON))),
		Seed:     rng.Uint64(),
	}
	sizes := stressSizes
	for len(sizes) > 1 && sizes[len(sizes)-1] > maxSize {
		sizes = sizes[:len(sizes)-1]
	}
	p.Size = sizes[rng.IntN(len(sizes))]
	if p.Framing == "trickle" {
		p.Size = min(p.Size, trickleMax)
	}
	switch r := rng.IntN(100); {
	case r < 8:
		p.Abort, p.AbortAt = "upload", rng.Int64N(p.Size+1)
	case r < 14:
		p.Abort, p.AbortAt = "response", rng.Int64N(p.Size+1)
	}
	return p
}

// stressUpload is what happened to one upload, as the client saw it.
type stressUpload struct {
	Plan     stressPlan `json:"plan"`
	Outcome  string     `json:"outcome"`
	Status   int        `json:"status,omitempty"`
	Sent     int64      `json:"sent"`          // request body bytes the transport took
	Wire     int64      `json:"wire"`          // response body bytes received
	Decoded  int64      `json:"decoded"`       // after undoing the response's encoding
	Encoding string     `json:"encoding"`      // the response's content-encoding
	WireEnd  string     `json:"wire_end"`      // how the response body ended: "eof" or the error
	Err      string     `json:"err,omitempty"` // why it failed, or why it is bad
	Seconds  float64    `json:"seconds"`
	Ended    time.Time  `json:"ended"`
	// Upstream is the echo's view of the request body, filled in after the run.
	Upstream string `json:"upstream,omitempty"`
	// sum is the SHA-256 of the request body, nil unless the transport took all of it.
	sum []byte
}

// stressClient sends stress uploads over shared connections: h2 streams multiplex
// on one connection, and an abort resets one stream among others.
type stressClient struct {
	url  string
	h1   *http.Transport
	h2   *http.Transport
	idle time.Duration // the trickle's largest pause
}

func newStressClient(url string) *stressClient {
	h1, h2 := harness.NewTransport(harness.H1), harness.NewTransport(harness.H2)
	return &stressClient{url: strings.TrimSuffix(url, "/"), h1: h1, h2: h2, idle: 20 * time.Millisecond}
}

func (c *stressClient) close() {
	c.h1.CloseIdleConnections()
	c.h2.CloseIdleConnections()
}

var errClientAbort = errors.New("stress client hung up on purpose")

// do sends one upload and classifies what came back.
func (c *stressClient) do(ctx context.Context, p stressPlan) stressUpload {
	start := time.Now()
	u := stressUpload{Plan: p}
	u.Outcome, u.Err = c.send(ctx, p, &u)
	if u.Outcome == outcomeFailed && p.Abort != "" {
		u.Outcome = outcomeAborted
	}
	u.Ended = time.Now()
	u.Seconds = u.Ended.Sub(start).Seconds()
	return u
}

func (c *stressClient) send(ctx context.Context, p stressPlan, u *stressUpload) (string, string) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	b, err := harness.NewBody(p.Kind, p.Size, p.Seed, "")
	if err != nil {
		return outcomeFailed, err.Error()
	}
	var src io.Reader = b
	if p.Framing == "trickle" {
		src = &trickleReader{r: src, rng: rand.New(rand.NewPCG(p.Seed, 1)), pause: c.idle}
	}
	if p.Abort == "upload" {
		src = &cutReader{r: src, left: p.AbortAt, cut: func() { cancel(errClientAbort) }}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url+p.path(), io.NopCloser(src))
	if err != nil {
		return outcomeFailed, err.Error()
	}
	req.Header.Set("X-Request-Id", p.ID)
	req.Header.Set("Content-Type", b.ContentType())
	switch {
	case p.Framing == "length":
		req.ContentLength = p.Size
		if p.Size == 0 {
			req.Body = http.NoBody
		}
	default:
		req.ContentLength = -1
	}
	transport := c.h1
	if p.Protocol == harness.H2 {
		transport = c.h2
	}
	resp, err := transport.RoundTrip(req)
	u.Sent, u.sum = b.Sent()
	if err != nil {
		return outcomeFailed, "request: " + err.Error()
	}
	defer resp.Body.Close()
	u.Status = resp.StatusCode
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return outcomeFailed, fmt.Sprintf("status %d: %s", resp.StatusCode, strings.TrimSpace(string(msg)))
	}
	var body io.Reader = resp.Body
	if p.Abort == "response" {
		body = &cutReader{r: body, left: p.AbortAt, cut: func() { cancel(errClientAbort) }}
	}
	got, readErr := harness.ReadResponse(body, resp.Header.Get("Content-Encoding"), nil)
	u.Sent, u.sum = b.Sent()
	u.Wire, u.Decoded, u.Encoding = got.Wire, got.Decoded, got.Encoding
	u.WireEnd = "eof"
	if !got.EndedCleanly() {
		u.WireEnd = fmt.Sprint(got.WireEnd)
	}
	size, sum := b.Sent()
	verifyErr := readErr
	if verifyErr == nil {
		verifyErr = got.Verify(size, sum)
	}
	switch {
	case verifyErr == nil && size == p.Size:
		return outcomeOK, ""
	case got.EndedCleanly():
		// The HTTP framing said the body was whole, and it is not what was sent.
		return outcomeBad, fmt.Sprintf("response ended cleanly but is wrong: %v", verifyErr)
	default:
		return outcomeFailed, fmt.Sprintf("response: %v", verifyErr)
	}
}

// trickleReader hands out its source in pieces of at most 4 KiB with a pause of up
// to pause before each: a slow client, whose pauses trip bodystream's idle flushes.
type trickleReader struct {
	r     io.Reader
	rng   *rand.Rand
	pause time.Duration
}

func (t *trickleReader) Read(p []byte) (int, error) {
	time.Sleep(time.Duration(t.rng.Int64N(int64(t.pause))))
	return t.r.Read(p[:min(len(p), 1+t.rng.IntN(4096))])
}

// cutReader reads left bytes from r, then calls cut and fails: the client hangs up.
type cutReader struct {
	r    io.Reader
	left int64
	cut  func()
}

func (c *cutReader) Read(p []byte) (int, error) {
	if c.left <= 0 {
		// A body that ends right here was read whole: a hang-up now would come after
		// the end, and the upload is judged as complete. One more byte tells.
		var probe [1]byte
		if n, err := io.ReadFull(c.r, probe[:]); n == 0 && err == io.EOF {
			return 0, io.EOF
		}
		c.cut()
		return 0, errClientAbort
	}
	n, err := c.r.Read(p[:min(int64(len(p)), c.left)])
	c.left -= int64(n)
	return n, err
}
