package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"net/textproto"
	"testing"

	"go.uber.org/goleak"

	"github.com/bodystream/bodystream/app"
	"github.com/bodystream/bodystream/config"
	"github.com/bodystream/bodystream/pipeline"
	"github.com/bodystream/bodystream/stage"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestCheckConfig runs the binary's entry point as `bodystream-redact -check-config
// bodystream.yaml` does: the configuration names the redact kind, so this passes
// only when the import in main.go registered it.
func TestCheckConfig(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if err := app.Run(t.Context(), []string{"-check-config", "bodystream.yaml"}, &stdout, &stderr); err != nil {
		t.Fatalf("Run: %v (stderr %q)", err, stderr.String())
	}
	if got, want := stdout.String(), "bodystream.yaml: ok\n"; got != want {
		t.Errorf("stdout = %q, want %q", got, want)
	}
}

// TestRoute sends bodies through the request pipeline that the route "redact" of
// bodystream.yaml chooses, the way the server does: in pieces, through the
// pipeline's goroutines and pipes.
func TestRoute(t *testing.T) {
	cfg, err := config.Load("bodystream.yaml")
	if err != nil {
		t.Fatal(err)
	}
	router, err := pipeline.Build(cfg)
	if err != nil {
		t.Fatal(err)
	}
	pair, unknown := router.Choose("redact", "", "/upload")
	if unknown {
		t.Fatal(`route "redact" is unknown`)
	}

	run := func(contentEncoding, body string) (string, stage.HeaderEdit, error) {
		m := &stage.Message{Direction: stage.Request, Header: textproto.MIMEHeader{}}
		if contentEncoding != "" {
			m.Header.Set("Content-Encoding", contentEncoding)
		}
		var out bytes.Buffer
		r, err := pair.Request.Start(context.Background(), m, nil, &out)
		if err != nil {
			t.Fatal(err)
		}
		for rest := []byte(body); len(rest) > 0; { // 5-byte pieces cut keys and values
			piece := rest[:min(5, len(rest))]
			rest = rest[len(piece):]
			if _, err := r.Write(piece); err != nil {
				r.Abort(err)
				return "", r.Edit(), err
			}
		}
		_, err = r.Close()
		return out.String(), r.Edit(), err
	}

	in := `{"user":"ann","password":"hunter2","ssn":"078-05-1120"}` + "\n" + `{"user":"bob"}`
	got, edit, err := run("", in)
	if err != nil {
		t.Fatalf("redacted body: %v", err)
	}
	if want := `{"user":"ann"}` + "\n" + `{"user":"bob"}`; got != want {
		t.Errorf("redacted body = %q, want %q", got, want)
	}
	if !edit.ChangesLength || edit.ContentEncoding != nil {
		t.Errorf("edit = %+v, want ChangesLength only", edit)
	}

	// A compressed body is decoded by the decompress step in front, then redacted.
	var zipped bytes.Buffer
	zw := gzip.NewWriter(&zipped)
	zw.Write([]byte(in))
	zw.Close()
	if got, edit, err := run("gzip", zipped.String()); err != nil || got != `{"user":"ann"}`+"\n"+`{"user":"bob"}` {
		t.Errorf("gzip body = %q, %v; want it decoded and redacted", got, err)
	} else if edit.ContentEncoding == nil || *edit.ContentEncoding != "" {
		t.Errorf("gzip body: edit %+v, want the content-encoding removed", edit)
	}

	if _, _, err := run("", `{"password":"hunter2"`+"\n"); !errors.Is(err, stage.ErrCorruptInput) {
		t.Errorf("corrupt body: error = %v, want %v", err, stage.ErrCorruptInput)
	}
}
