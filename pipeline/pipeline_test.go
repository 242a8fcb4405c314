package pipeline

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/textproto"
	"runtime"
	"strings"
	"testing"
	"testing/synctest"

	"github.com/bodystream/bodystream/stage"
)

// spec is a test step: plan decides what it does for one body.
type spec struct {
	name string
	plan func(m *stage.Message, preview []byte) (stage.Step, error)
}

func (s spec) Name() string                   { return s.name }
func (s spec) PreviewSize(*stage.Message) int { return 0 }
func (s spec) Plan(m *stage.Message, preview []byte) (stage.Step, error) {
	return s.plan(m, preview)
}

func transform(name string, f stage.TransformFunc) spec {
	return spec{name, func(*stage.Message, []byte) (stage.Step, error) {
		return stage.Step{Transformer: f}, nil
	}}
}

// mapChunks is a stage that writes f of each chunk it reads.
func mapChunks(f func([]byte) []byte) stage.TransformFunc {
	return func(dst io.Writer, src io.Reader) error {
		buf := make([]byte, 4096)
		for {
			n, err := src.Read(buf)
			if n > 0 {
				if _, err := dst.Write(f(buf[:n])); err != nil {
					return err
				}
			}
			if err == io.EOF {
				return nil
			}
			if err != nil {
				return err
			}
		}
	}
}

func upper() spec { return transform("upper", mapChunks(bytes.ToUpper)) }

// suffix copies its input and then writes text.
func suffix(text string) spec {
	return transform("suffix", func(dst io.Writer, src io.Reader) error {
		if _, err := io.Copy(dst, src); err != nil {
			return err
		}
		_, err := io.WriteString(dst, text)
		return err
	})
}

// failAfter copies n bytes, then fails with err.
func failAfter(n int64, err error) spec {
	return transform("fail", func(dst io.Writer, src io.Reader) error {
		if _, err := io.CopyN(dst, src, n); err != nil {
			return err
		}
		return err
	})
}

// skipped is a step that decides to do nothing.
func skipped() spec {
	return spec{"skipped", func(*stage.Message, []byte) (stage.Step, error) { return stage.Step{}, nil }}
}

// recorder is an observer that keeps what it sees.
type recorder struct {
	name      string
	seen      bytes.Buffer
	writeErr  error // returned by Write
	finishErr error // returned by Finish
	finished  int
	aborted   int
}

func (o *recorder) Write(p []byte) (int, error) {
	if o.writeErr != nil {
		return 0, o.writeErr
	}
	return o.seen.Write(p)
}

func (o *recorder) Finish() (stage.Result, error) {
	o.finished++
	if o.finishErr != nil {
		return stage.Result{}, o.finishErr
	}
	return stage.Result{Metadata: map[string]string{o.name: o.seen.String()}}, nil
}

func (o *recorder) Abort() { o.aborted++ }

func (o *recorder) spec() spec {
	return spec{o.name, func(*stage.Message, []byte) (stage.Step, error) {
		return stage.Step{Observer: o}, nil
	}}
}

func newMessage() *stage.Message {
	return &stage.Message{Direction: stage.Response, Header: textproto.MIMEHeader{
		"Content-Type":   {"application/json"},
		"Content-Length": {"6"},
	}}
}

func steps(specs ...stage.Spec) *Pipeline { return &Pipeline{Steps: specs} }

// run feeds chunks through p and returns the output, the results and the first error.
func run(t *testing.T, p *Pipeline, chunks ...string) (string, stage.Result, error) {
	t.Helper()
	var out bytes.Buffer
	r, err := p.Start(t.Context(), newMessage(), nil, &out)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	var writeErr error
	for _, c := range chunks {
		if _, writeErr = r.Write([]byte(c)); writeErr != nil {
			break
		}
	}
	res, err := r.Close()
	if writeErr != nil && err != writeErr {
		t.Errorf("Write returned %v, Close %v: want the same first error", writeErr, err)
	}
	return out.String(), res, err
}

func TestRunOutput(t *testing.T) {
	tests := []struct {
		name   string
		steps  []stage.Spec
		chunks []string
		want   string
	}{
		{"no steps", nil, []string{"ab", "c"}, "abc"},
		{"only a skipped step", []stage.Spec{skipped()}, []string{"abc"}, "abc"},
		{"one stage", []stage.Spec{upper()}, []string{"ab", "c"}, "ABC"},
		{"empty body", []stage.Spec{upper(), suffix("!")}, nil, "!"},
		{"empty writes", []stage.Spec{upper()}, []string{"", "a", ""}, "A"},
		{"in order: suffix then upper", []stage.Spec{suffix("!x"), upper()}, []string{"ab"}, "AB!X"},
		{"in order: upper then suffix", []stage.Spec{upper(), suffix("!x")}, []string{"ab"}, "AB!x"},
		{"skipped step between", []stage.Spec{upper(), skipped(), suffix("1"), suffix("2")}, []string{"a"}, "A12"},
		{"large body", []stage.Spec{upper(), upper()}, []string{strings.Repeat("xy", 100_000)}, strings.Repeat("XY", 100_000)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, _, err := run(t, steps(tt.steps...), tt.chunks...)
			if err != nil {
				t.Fatalf("Close: %v", err)
			}
			if got != tt.want {
				t.Errorf("output %q, want %q", got, tt.want)
			}
		})
	}
}

func TestObserverPositions(t *testing.T) {
	tests := []struct {
		name  string
		steps func(before, between, after *recorder) []stage.Spec
		want  map[string]string // what each observer saw
		out   string
	}{
		{
			name: "before, between and after",
			steps: func(before, between, after *recorder) []stage.Spec {
				return []stage.Spec{before.spec(), upper(), between.spec(), suffix("!"), after.spec()}
			},
			want: map[string]string{"before": "abc", "between": "ABC", "after": "ABC!"},
			out:  "ABC!",
		},
		{
			name: "all in front",
			steps: func(before, between, after *recorder) []stage.Spec {
				return []stage.Spec{before.spec(), between.spec(), after.spec(), upper()}
			},
			want: map[string]string{"before": "abc", "between": "abc", "after": "abc"},
			out:  "ABC",
		},
		{
			name: "no transform",
			steps: func(before, between, after *recorder) []stage.Spec {
				return []stage.Spec{before.spec(), skipped(), between.spec(), after.spec()}
			},
			want: map[string]string{"before": "abc", "between": "abc", "after": "abc"},
			out:  "abc",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			recs := []*recorder{{name: "before"}, {name: "between"}, {name: "after"}}
			out, res, err := run(t, steps(tt.steps(recs[0], recs[1], recs[2])...), "a", "bc")
			if err != nil {
				t.Fatalf("Close: %v", err)
			}
			if out != tt.out {
				t.Errorf("output %q, want %q", out, tt.out)
			}
			for _, o := range recs {
				if got := o.seen.String(); got != tt.want[o.name] {
					t.Errorf("observer %s saw %q, want %q", o.name, got, tt.want[o.name])
				}
				if o.finished != 1 || o.aborted != 0 {
					t.Errorf("observer %s finished %d, aborted %d times; want 1, 0", o.name, o.finished, o.aborted)
				}
				if got := res.Metadata[o.name]; got != tt.want[o.name] {
					t.Errorf("result %s = %q, want %q", o.name, got, tt.want[o.name])
				}
			}
		})
	}
}

func TestPlanSeesEditedHeaders(t *testing.T) {
	encoding := func(name, enc string, changesLength bool) spec {
		return spec{name, func(*stage.Message, []byte) (stage.Step, error) {
			return stage.Step{Transformer: mapChunks(bytes.Clone), Edit: stage.HeaderEdit{ContentEncoding: &enc, ChangesLength: changesLength}}, nil
		}}
	}
	var seen []textproto.MIMEHeader
	var previews []string
	look := spec{"look", func(m *stage.Message, preview []byte) (stage.Step, error) {
		seen = append(seen, maps.Clone(m.Header))
		previews = append(previews, string(preview))
		return stage.Step{}, nil
	}}
	p := steps(look, encoding("gunzip", "", false), look, encoding("zstd", "zstd", true), look)

	m := newMessage()
	m.Header.Set("Content-Encoding", "gzip")
	r, err := p.Start(t.Context(), m, []byte("preview"), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Abort(nil)

	want := []struct{ encoding, length, preview string }{
		{"gzip", "6", "preview"},
		{"", "6", ""}, // the preview shows the input, not gunzip's output
		{"zstd", "", ""},
	}
	for i, w := range want {
		h := seen[i]
		if h.Get("Content-Encoding") != w.encoding || h.Get("Content-Length") != w.length || previews[i] != w.preview {
			t.Errorf("step %d saw content-encoding %q, content-length %q, preview %q; want %q, %q, %q", i,
				h.Get("Content-Encoding"), h.Get("Content-Length"), previews[i], w.encoding, w.length, w.preview)
		}
	}
	if m.Header.Get("Content-Encoding") != "gzip" || m.Header.Get("Content-Length") != "6" {
		t.Errorf("Start changed the message's headers: %v", m.Header)
	}
	edit := r.Edit()
	if edit.ContentEncoding == nil || *edit.ContentEncoding != "zstd" || !edit.ChangesLength {
		t.Errorf("Edit() = %+v, want content-encoding zstd and ChangesLength", edit)
	}
}

// TestEditOfAStepThatDoesNothing: a step that neither transforms nor observes still
// edits the headers (a compressor that chose identity says vary), and the steps
// after it see the edit.
func TestEditOfAStepThatDoesNothing(t *testing.T) {
	vary, etag := "Origin, Accept-Encoding", ""
	varies := spec{"varies", func(*stage.Message, []byte) (stage.Step, error) {
		return stage.Step{Edit: stage.HeaderEdit{Vary: &vary, ETag: &etag}}, nil
	}}
	var seen textproto.MIMEHeader
	look := spec{"look", func(m *stage.Message, _ []byte) (stage.Step, error) {
		seen = maps.Clone(m.Header)
		return stage.Step{}, nil
	}}
	m := newMessage()
	m.Header.Set("Vary", "Origin")
	m.Header.Set("Etag", `"v1"`)
	r, err := steps(varies, look).Start(t.Context(), m, nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Abort(nil)
	if !r.Identity() {
		t.Error("no step transforms, yet the run is not identity")
	}
	if e := r.Edit(); e.Vary == nil || *e.Vary != vary || e.ETag == nil || *e.ETag != "" || e.ContentEncoding != nil || e.ChangesLength {
		t.Errorf("Edit() = %+v, want vary %q and etag removed, nothing else", e, vary)
	}
	if seen.Get("Vary") != vary || seen.Get("Etag") != "" || len(seen["Etag"]) != 0 {
		t.Errorf("the next step saw vary %q, etag %q; want %q and none", seen.Get("Vary"), seen.Get("Etag"), vary)
	}
}

func TestPlanError(t *testing.T) {
	errBad := errors.New("bad option")
	o := &recorder{name: "hash"}
	bad := spec{"bad", func(*stage.Message, []byte) (stage.Step, error) { return stage.Step{}, errBad }}
	r, err := steps(o.spec(), upper(), bad).Start(t.Context(), newMessage(), nil, io.Discard)
	if r != nil || !errors.Is(err, errBad) || !strings.HasPrefix(err.Error(), "stage bad: ") {
		t.Fatalf("Start = %v, %v; want stage bad: %v", r, err, errBad)
	}
	if o.aborted != 1 {
		t.Errorf("observer planned before the failure aborted %d times, want 1", o.aborted)
	}
}

type failingWriter struct{ err error }

func (w failingWriter) Write([]byte) (int, error) { return 0, w.err }

func TestFirstError(t *testing.T) {
	errOut := errors.New("client gone")
	match := &stage.ScanMatch{Rule: "eicar", Offset: 1}
	tests := []struct {
		name   string
		steps  func(o *recorder) []stage.Spec
		out    io.Writer
		prefix string // of the error's text
		is     error
	}{
		{
			name: "stage between stages",
			steps: func(o *recorder) []stage.Spec {
				return []stage.Spec{upper(), o.spec(), failAfter(2, stage.ErrCorruptInput), upper()}
			},
			prefix: "stage fail: corrupt input",
			is:     stage.ErrCorruptInput,
		},
		{
			name:   "first stage before reading",
			steps:  func(o *recorder) []stage.Spec { return []stage.Spec{o.spec(), failAfter(0, stage.ErrCorruptInput)} },
			prefix: "stage fail: corrupt input",
			is:     stage.ErrCorruptInput,
		},
		{
			name: "observer behind a stage",
			steps: func(o *recorder) []stage.Spec {
				o.writeErr = match
				return []stage.Spec{upper(), o.spec(), upper()}
			},
			prefix: "stage observer: scan rule",
			is:     match,
		},
		{
			name: "observer in front",
			steps: func(o *recorder) []stage.Spec {
				o.writeErr = match
				return []stage.Spec{o.spec(), upper()}
			},
			prefix: "stage observer: scan rule",
			is:     match,
		},
		{
			name: "observer without stages",
			steps: func(o *recorder) []stage.Spec {
				o.writeErr = stage.ErrBodyTooLarge
				return []stage.Spec{o.spec()}
			},
			prefix: "stage observer: body too large",
			is:     stage.ErrBodyTooLarge,
		},
		{
			name: "observer's Finish",
			steps: func(o *recorder) []stage.Spec {
				o.finishErr = stage.ErrBodyTooLarge
				return []stage.Spec{upper(), o.spec()}
			},
			prefix: "stage observer: body too large",
			is:     stage.ErrBodyTooLarge,
		},
		{
			name:   "output",
			steps:  func(o *recorder) []stage.Spec { return []stage.Spec{o.spec(), upper(), suffix("!")} },
			out:    failingWriter{errOut},
			prefix: "stage suffix: client gone",
			is:     errOut,
		},
		{
			name:   "output without stages",
			steps:  func(o *recorder) []stage.Spec { return []stage.Spec{o.spec()} },
			out:    failingWriter{errOut},
			prefix: "client gone",
			is:     errOut,
		},
		{
			name: "stage that stops reading early",
			steps: func(o *recorder) []stage.Spec {
				return []stage.Spec{o.spec(), transform("early", func(io.Writer, io.Reader) error { return nil })}
			},
			prefix: "stage early: returned before the end of its input",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := &recorder{name: "observer"}
			out := tt.out
			if out == nil {
				out = io.Discard
			}
			r, err := steps(tt.steps(o)...).Start(t.Context(), newMessage(), nil, out)
			if err != nil {
				t.Fatal(err)
			}
			var writeErr error
			for _, chunk := range []string{"abc", "def", "ghi"} {
				if _, writeErr = r.Write([]byte(chunk)); writeErr != nil {
					break
				}
			}
			res, err := r.Close()
			if err == nil || !strings.HasPrefix(err.Error(), tt.prefix) {
				t.Fatalf("Close error %v, want one that starts with %q", err, tt.prefix)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("errors.Is(%v, %v) is false", err, tt.is)
			}
			if writeErr != nil && writeErr != err {
				t.Errorf("Write returned %v, Close %v: want the same first error", writeErr, err)
			}
			if _, err2 := r.Write([]byte("x")); err2 == nil {
				t.Error("Write after a failure succeeded")
			}
			if res.Metadata != nil {
				t.Errorf("results %v after a failure", res)
			}
			if o.aborted != 1 {
				t.Errorf("observer aborted %d times, want 1", o.aborted)
			}
		})
	}
}

func TestScanMatchReachesCaller(t *testing.T) {
	o := &recorder{name: "scan", writeErr: &stage.ScanMatch{Rule: "eicar", Offset: 7}}
	_, _, err := run(t, steps(upper(), o.spec()), "abc")
	if match, ok := errors.AsType[*stage.ScanMatch](err); !ok || match.Rule != "eicar" || match.Offset != 7 {
		t.Errorf("error %v does not carry the scan match", err)
	}
}

// gate is a stage that reads nothing until open is closed.
func gate(open <-chan struct{}) spec {
	return transform("gate", func(dst io.Writer, src io.Reader) error {
		<-open
		_, err := io.Copy(dst, src)
		return err
	})
}

func TestCancelEndsStages(t *testing.T) {
	errShutdown := errors.New("shutting down")
	t.Run("idle stages", func(t *testing.T) {
		ctx, cancel := context.WithCancelCause(t.Context())
		var out bytes.Buffer
		r, err := steps(upper(), upper()).Start(ctx, newMessage(), nil, &out)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := r.Write([]byte("abc")); err != nil {
			t.Fatal(err)
		}
		cancel(errShutdown) // both stages wait on their input
		if _, err := r.Close(); !errors.Is(err, errShutdown) {
			t.Errorf("Close after cancel: %v, want %v", err, errShutdown)
		}
	})
	t.Run("writer and stage blocked on pipes", func(t *testing.T) {
		ctx, cancel := context.WithCancelCause(t.Context())
		open := make(chan struct{})
		// upper blocks writing to gate, then Write blocks writing to upper.
		r, err := steps(upper(), gate(open)).Start(ctx, newMessage(), nil, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		writeDone := make(chan error)
		go func() {
			var err error
			for err == nil {
				_, err = r.Write([]byte("abc"))
			}
			writeDone <- err
		}()
		cancel(errShutdown)
		if err := <-writeDone; !errors.Is(err, errShutdown) {
			t.Errorf("blocked Write returned %v, want %v", err, errShutdown)
		}
		close(open) // gate waits on a channel of its own, not on the pipeline
		if _, err := r.Close(); !errors.Is(err, errShutdown) {
			t.Errorf("Close after cancel: %v, want %v", err, errShutdown)
		}
	})
}

func TestAbort(t *testing.T) {
	errStop := errors.New("stream reset")
	t.Run("after Close", func(t *testing.T) {
		o := &recorder{name: "hash"}
		r, err := steps(o.spec(), upper()).Start(t.Context(), newMessage(), nil, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := r.Close(); err != nil {
			t.Fatal(err)
		}
		r.Abort(errStop)
		r.Abort(nil)
		if o.finished != 1 || o.aborted != 0 {
			t.Errorf("observer finished %d, aborted %d times; want 1, 0", o.finished, o.aborted)
		}
		if _, err := r.Close(); err == nil {
			t.Error("second Close succeeded")
		}
	})
	for _, withStages := range []bool{false, true} {
		t.Run(fmt.Sprintf("before Close, stages %v", withStages), func(t *testing.T) {
			o := &recorder{name: "hash"}
			p := steps(o.spec())
			if withStages {
				p = steps(o.spec(), upper(), upper())
			}
			r, err := p.Start(t.Context(), newMessage(), nil, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := r.Write([]byte("abc")); err != nil {
				t.Fatal(err)
			}
			r.Abort(errStop)
			r.Abort(errors.New("again"))
			if o.finished != 0 || o.aborted != 1 {
				t.Errorf("observer finished %d, aborted %d times; want 0, 1", o.finished, o.aborted)
			}
			if _, err := r.Write([]byte("x")); !errors.Is(err, errStop) {
				t.Errorf("Write after Abort: %v, want %v", err, errStop)
			}
			if _, err := r.Close(); err == nil {
				t.Error("Close after Abort succeeded")
			}
		})
	}
}

// sliceRecorder keeps the slices it is given, to show that nothing copied them.
type sliceRecorder struct{ writes [][]byte }

func (w *sliceRecorder) Write(p []byte) (int, error) {
	w.writes = append(w.writes, p)
	return len(p), nil
}

func TestIdentityIsSynchronous(t *testing.T) {
	tests := []struct {
		name       string
		steps      []stage.Spec
		identity   bool
		goroutines int
	}{
		{"no steps", nil, true, 0},
		{"observers and skipped steps", []stage.Spec{(&recorder{name: "a"}).spec(), skipped(), (&recorder{name: "b"}).spec()}, true, 0},
		{"two stages", []stage.Spec{upper(), (&recorder{name: "a"}).spec(), upper()}, false, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := &sliceRecorder{}
			before := runtime.NumGoroutine()
			r, err := steps(tt.steps...).Start(t.Context(), newMessage(), nil, out)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Abort(nil)
			if got := runtime.NumGoroutine() - before; got != tt.goroutines {
				t.Errorf("Start started %d goroutines, want %d", got, tt.goroutines)
			}
			if r.Identity() != tt.identity {
				t.Errorf("Identity() = %v, want %v", r.Identity(), tt.identity)
			}
			if !tt.identity {
				return
			}
			in := []byte("abc")
			if _, err := r.Write(in); err != nil {
				t.Fatal(err)
			}
			if len(out.writes) != 1 || &out.writes[0][0] != &in[0] {
				t.Errorf("out got %q, want the very slice given to Write, before Write returned", out.writes)
			}
		})
	}
}

// heldWriter hands each write to the test on entered and returns when released.
type heldWriter struct {
	entered  chan string
	released chan struct{}
}

func (w *heldWriter) Write(p []byte) (int, error) {
	w.entered <- string(p)
	<-w.released
	return len(p), nil
}

func TestBlockedOutputBlocksWrite(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		out := &heldWriter{entered: make(chan string), released: make(chan struct{})}
		r, err := steps(upper()).Start(t.Context(), newMessage(), nil, out)
		if err != nil {
			t.Fatal(err)
		}
		written := make(chan error)
		go func() {
			for _, chunk := range []string{"abc", "def"} {
				_, err := r.Write([]byte(chunk))
				written <- err
			}
		}()

		if err := <-written; err != nil {
			t.Fatal(err)
		}
		if got := <-out.entered; got != "ABC" {
			t.Fatalf("out got %q, want ABC", got)
		}
		synctest.Wait() // every goroutine is blocked: out holds the stage, the stage holds Write
		select {
		case <-written:
			t.Fatal("Write returned while out was blocked")
		default:
		}

		out.released <- struct{}{}
		if err := <-written; err != nil {
			t.Fatal(err)
		}
		if got := <-out.entered; got != "DEF" {
			t.Fatalf("out got %q, want DEF", got)
		}
		out.released <- struct{}{}
		if _, err := r.Close(); err != nil {
			t.Fatal(err)
		}
	})
}
