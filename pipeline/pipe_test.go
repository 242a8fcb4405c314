package pipeline

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/klauspost/compress/zstd"
	"go.yaml.in/yaml/v3"

	"github.com/bodystream/bodystream/config"
	"github.com/bodystream/bodystream/internal/syncbuf"
	"github.com/bodystream/bodystream/stage"
	_ "github.com/bodystream/bodystream/stages"
)

func TestPipeFlushesOncePerPause(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r, w := newPipe(10 * time.Millisecond)
		var got []string
		r.NotifyIdle(func() error {
			got = append(got, "flush")
			return nil
		})
		done := make(chan struct{})
		go func() {
			defer close(done)
			buf := make([]byte, 16)
			for {
				n, err := r.Read(buf)
				switch {
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
		time.Sleep(50 * time.Millisecond) // a pause before any byte: nothing to flush
		w.Write([]byte("a"))
		time.Sleep(50 * time.Millisecond) // fake time: the reader sees one pause, not five
		w.Write([]byte("b"))
		w.Write([]byte("c"))
		w.Close()
		<-done
		if want := "a flush b c"; strings.Join(got, " ") != want {
			t.Fatalf("reads %q, want %q", strings.Join(got, " "), want)
		}
	})
}

func TestPipeFlushErrorEndsRead(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r, w := newPipe(10 * time.Millisecond)
		boom := errors.New("flush failed")
		r.NotifyIdle(func() error { return boom })
		go w.Write([]byte("a"))
		buf := make([]byte, 4)
		if n, err := r.Read(buf); n != 1 || err != nil {
			t.Fatalf("first read %d, %v", n, err)
		}
		if _, err := r.Read(buf); !errors.Is(err, boom) {
			t.Fatalf("read after a failed flush: %v, want the flush's error", err)
		}
	})
}

// TestPipeWithoutNotifyNeverFlushes: a stage that did not ask is never interrupted,
// whatever the delay.
func TestPipeWithoutNotifyNeverFlushes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r, w := newPipe(10 * time.Millisecond)
		go w.Write([]byte("a"))
		buf := make([]byte, 4)
		r.Read(buf)
		read := make(chan error, 1)
		go func() {
			_, err := r.Read(buf)
			read <- err
		}()
		time.Sleep(time.Hour)
		synctest.Wait()
		select {
		case err := <-read:
			t.Fatalf("read returned %v while the writer paused", err)
		default:
		}
		w.Close()
		if err := <-read; err != io.EOF {
			t.Fatalf("read %v, want io.EOF", err)
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
				var out syncbuf.Buffer
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
