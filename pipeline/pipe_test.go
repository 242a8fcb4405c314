package pipeline

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/klauspost/compress/zstd"
	"go.yaml.in/yaml/v3"

	"github.com/bodystream/bodystream/config"
	"github.com/bodystream/bodystream/stage"
	_ "github.com/bodystream/bodystream/stages"
)

func TestPipeReportsIdleOncePerPause(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r, w := newPipe(10 * time.Millisecond)
		var got []string
		done := make(chan struct{})
		go func() {
			defer close(done)
			buf := make([]byte, 16)
			for {
				n, err := r.Read(buf)
				switch {
				case errors.Is(err, stage.ErrInputIdle):
					got = append(got, "idle")
				case err == io.EOF:
					return
				case err != nil:
					t.Errorf("read: %v", err)
					return
				default:
					got = append(got, string(buf[:n]))
				}
			}
		}()
		w.Write([]byte("a"))
		time.Sleep(50 * time.Millisecond) // fake time: the reader sees one pause, not five
		w.Write([]byte("b"))
		w.Write([]byte("c"))
		w.Close()
		<-done
		if want := "a idle b c"; strings.Join(got, " ") != want {
			t.Fatalf("reads %q, want %q", strings.Join(got, " "), want)
		}
	})
}

func TestPipeWithoutIdleBlocks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r, w := newPipe(0)
		read := make(chan error, 1)
		go func() {
			_, err := r.Read(make([]byte, 1))
			read <- err
		}()
		time.Sleep(time.Hour)
		synctest.Wait()
		select {
		case err := <-read:
			t.Fatalf("read returned %v with no writer and no idle timeout", err)
		default:
		}
		w.CloseWithError(errors.New("gone"))
		if err := <-read; err == nil || err.Error() != "gone" {
			t.Fatalf("read error %v, want the writer's", err)
		}
	})
}

// syncBuffer is an out that a test can read while the pipeline writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return bytes.Clone(b.buf.Bytes())
}

// TestTrickleThroughCompressorsStreams: a compressor holds its block until it is
// full; with a flush delay it flushes when input pauses, so the first bytes of a slow
// upload come out (and decode) while the upload is still open.
func TestTrickleThroughCompressorsStreams(t *testing.T) {
	decoders := map[string]func(io.Reader) (io.Reader, error){
		"gzip": func(r io.Reader) (io.Reader, error) { return gzip.NewReader(r) },
		"zstd": func(r io.Reader) (io.Reader, error) { return zstd.NewReader(r) },
	}
	for kind, decode := range decoders {
		t.Run(kind, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				spec, err := buildStep(kind, "preview_bytes: 0")
				if err != nil {
					t.Fatal(err)
				}
				p := &Pipeline{Steps: []stage.Spec{spec}, FlushDelay: 5 * time.Millisecond}
				var out syncBuffer
				run, err := p.Start(context.Background(), &stage.Message{}, nil, &out)
				if err != nil {
					t.Fatal(err)
				}
				first := []byte(`{"event": "first line of a slow upload"}` + "\n")
				run.Write(first)
				time.Sleep(20 * time.Millisecond)
				synctest.Wait()
				dec, err := decode(bytes.NewReader(out.Bytes()))
				if err != nil {
					t.Fatalf("nothing decodable came out while the input paused: %v", err)
				}
				got := make([]byte, len(first))
				if _, err := io.ReadFull(dec, got); err != nil || !bytes.Equal(got, first) {
					t.Fatalf("decoded %q (%v), want the first line", got, err)
				}
				run.Write([]byte("rest\n"))
				if _, err := run.Close(); err != nil {
					t.Fatal(err)
				}
				dec, _ = decode(bytes.NewReader(out.Bytes()))
				all, err := io.ReadAll(dec)
				if err != nil || string(all) != string(first)+"rest\n" {
					t.Fatalf("whole output decodes to %q (%v)", all, err)
				}
			})
		})
	}
}

// buildStep builds a registered stage kind with options written in YAML.
func buildStep(kind, options string) (stage.Spec, error) {
	var node yaml.Node
	if err := yaml.Unmarshal([]byte(options), &node); err != nil {
		return nil, err
	}
	k, ok := stage.Lookup(kind)
	if !ok {
		return nil, fmt.Errorf("no stage kind %q", kind)
	}
	return k.Build(config.StepSpec{Kind: kind, Options: *node.Content[0]}.Decode)
}
