package stages

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/bodystream/bodystream/stage"
)

func newFileSpec(t *testing.T, spec FileSpec) stage.Spec {
	t.Helper()
	return built(t, spec, nil)
}

func planFile(t *testing.T, spec stage.Spec, d stage.Direction, requestID string) stage.Observer {
	t.Helper()
	step, err := spec.Plan(&stage.Message{Direction: d, RequestID: requestID}, nil)
	if err != nil {
		t.Fatalf("Plan: %v", err)
	}
	if step.Observer == nil || step.Transformer != nil {
		t.Fatalf("Plan = %+v, want an observer", step)
	}
	return step.Observer
}

func writeAll(t *testing.T, o stage.Observer, chunks ...[]byte) {
	t.Helper()
	for _, c := range chunks {
		if n, err := o.Write(c); n != len(c) || err != nil {
			t.Fatalf("Write = %d, %v", n, err)
		}
	}
}

// dirNames lists dir, hidden files included.
func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// finishFile finishes o and checks that it committed exactly want into dir.
func finishFile(t *testing.T, o stage.Observer, key string, want []byte) string {
	t.Helper()
	res, err := o.Finish()
	if err != nil {
		t.Fatalf("Finish: %v", err)
	}
	path := res.Metadata[key]
	if path == "" || len(res.Metadata) != 1 {
		t.Fatalf("Finish metadata = %v, want %s", res.Metadata, key)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s holds %d bytes, want %d", path, len(got), len(want))
	}
	return path
}

func TestFileCommit(t *testing.T) {
	for _, fsync := range []bool{false, true} {
		dir := t.TempDir()
		spec := newFileSpec(t, FileSpec{Dir: dir, Fsync: fsync})
		body := bytes.Repeat([]byte("0123456789abcdef"), 10_000)
		o := planFile(t, spec, stage.Response, "req-1")
		writeAll(t, o, body[:1], nil, body[1:70_000], body[70_000:])
		path := finishFile(t, o, "response_file", body)
		if want := filepath.Join(dir, "req-1.response.body"); path != want {
			t.Errorf("fsync %v: path %q, want %q", fsync, path, want)
		}
		if names := dirNames(t, dir); !slices.Equal(names, []string{"req-1.response.body"}) {
			t.Errorf("fsync %v: dir holds %q", fsync, names)
		}
		if _, err := o.Write([]byte("late")); err == nil {
			t.Errorf("Write after Finish succeeded")
		}
		if again := finishFile(t, o, "response_file", body); again != path {
			t.Errorf("second Finish reported %q", again)
		}
		o.Abort() // after a successful Finish: keeps the file
		if names := dirNames(t, dir); len(names) != 1 {
			t.Errorf("Abort after Finish: dir holds %q", names)
		}
	}
}

func TestFileEmptyBody(t *testing.T) {
	dir := t.TempDir()
	spec := newFileSpec(t, FileSpec{Dir: dir})
	finishFile(t, planFile(t, spec, stage.Request, "empty"), "request_file", nil)
	if names := dirNames(t, dir); !slices.Equal(names, []string{"empty.request.body"}) {
		t.Errorf("dir holds %q", names)
	}
}

func TestFileAbort(t *testing.T) {
	dir := t.TempDir()
	spec := newFileSpec(t, FileSpec{Dir: dir})
	o := planFile(t, spec, stage.Request, "req-1")
	writeAll(t, o, []byte("partial"))
	if names := dirNames(t, dir); len(names) != 1 || !strings.HasPrefix(names[0], ".req-1.request.body.") || !strings.HasSuffix(names[0], ".tmp") {
		t.Fatalf("while writing, dir holds %q, want one hidden temporary file", names)
	}
	o.Abort()
	o.Abort()
	if names := dirNames(t, dir); len(names) != 0 {
		t.Fatalf("after Abort, dir holds %q", names)
	}
	if _, err := o.Finish(); err == nil {
		t.Fatal("Finish after Abort succeeded")
	}
	if _, err := o.Write([]byte("x")); err == nil {
		t.Fatal("Write after Abort succeeded")
	}
}

func TestFileNames(t *testing.T) {
	tests := []struct {
		id   string
		want string // base name before ".request.body"
	}{
		{id: "req-1", want: "req-1"},
		{id: "Ok_ID-1.2", want: "Ok_ID-1.2"},
		{id: "../../etc/passwd", want: "_._.._etc_passwd"},
		{id: "/abs/path", want: "_abs_path"},
		{id: `a\b/c d`, want: "a_b_c_d"},
		{id: ".hidden", want: "_hidden"},
		{id: ".", want: "_"},
		{id: "..", want: "_."},
		{id: "héllo", want: "h_llo"},
		{id: "日本", want: "__"},
		{id: "x\xff\xfe", want: "x__"},
		{id: "a\x00b\nc", want: "a_b_c"},
		{id: "*?<>|:", want: "______"},
		{id: strings.Repeat("a", 300), want: strings.Repeat("a", maxFileIDLen)},
		{id: strings.Repeat("é", 200), want: strings.Repeat("_", maxFileIDLen)},
	}
	// The spec's dir is a subdirectory, so that a name that escaped it would show up
	// in the parent.
	parent := t.TempDir()
	dir := filepath.Join(parent, "bodies")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	spec := newFileSpec(t, FileSpec{Dir: dir})
	for _, tt := range tests {
		if got := safeFileID(tt.id); got != tt.want {
			t.Errorf("safeFileID(%q) = %q, want %q", tt.id, got, tt.want)
			continue
		}
		o := planFile(t, spec, stage.Request, tt.id)
		writeAll(t, o, []byte(tt.id))
		path := finishFile(t, o, "request_file", []byte(tt.id))
		if want := filepath.Join(dir, tt.want+".request.body"); path != want {
			t.Errorf("id %q: path %q, want %q", tt.id, path, want)
		}
	}
	if names := dirNames(t, parent); !slices.Equal(names, []string{"bodies"}) {
		t.Errorf("parent holds %q", names)
	}
	if names := dirNames(t, dir); len(names) != len(tests) {
		t.Errorf("dir holds %d files, want %d: %q", len(names), len(tests), names)
	}
}

func TestFileRandomID(t *testing.T) {
	dir := t.TempDir()
	spec := newFileSpec(t, FileSpec{Dir: dir})
	random := regexp.MustCompile(`^[0-9a-f]{32}\.response\.body$`)
	var paths []string
	for range 2 {
		o := planFile(t, spec, stage.Response, "")
		path := finishFile(t, o, "response_file", nil)
		if !random.MatchString(filepath.Base(path)) {
			t.Errorf("no request id: name %q", filepath.Base(path))
		}
		paths = append(paths, path)
	}
	if paths[0] == paths[1] {
		t.Errorf("two bodies without request id share %q", paths[0])
	}
}

func TestFileNoOverwrite(t *testing.T) {
	dir := t.TempDir()
	spec := newFileSpec(t, FileSpec{Dir: dir})
	existing := filepath.Join(dir, "dup.request.body")
	if err := os.WriteFile(existing, []byte("first"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Three bodies with the same id, all in flight before any finishes.
	var observers []stage.Observer
	for i := range 3 {
		o := planFile(t, spec, stage.Request, "dup")
		writeAll(t, o, []byte{byte('a' + i)})
		observers = append(observers, o)
	}
	for i, o := range observers {
		path := finishFile(t, o, "request_file", []byte{byte('a' + i)})
		if want := filepath.Join(dir, "dup.request."+string(rune('1'+i))+".body"); path != want {
			t.Errorf("body %d: path %q, want %q", i, path, want)
		}
	}
	if got, err := os.ReadFile(existing); err != nil || string(got) != "first" {
		t.Errorf("existing file now holds %q, %v", got, err)
	}
	// The response of the same request does not collide with it.
	finishFile(t, planFile(t, spec, stage.Response, "dup"), "response_file", nil)
	if names := dirNames(t, dir); len(names) != 5 {
		t.Errorf("dir holds %q", names)
	}
}

func TestFileManyDuplicates(t *testing.T) {
	dir := t.TempDir()
	spec := newFileSpec(t, FileSpec{Dir: dir})
	seen := map[string]bool{}
	for range fileNameAttempts + 10 {
		path := finishFile(t, planFile(t, spec, stage.Request, "same"), "request_file", nil)
		if seen[path] {
			t.Fatalf("%q reported twice", path)
		}
		seen[path] = true
	}
}

func TestFileMaxDirBytes(t *testing.T) {
	dir := t.TempDir()
	// 100 bytes already there count against the limit.
	if err := os.WriteFile(filepath.Join(dir, "old"), make([]byte, 100), 0o644); err != nil {
		t.Fatal(err)
	}
	spec := newFileSpec(t, FileSpec{Dir: dir, MaxDirBytes: 150})

	first := planFile(t, spec, stage.Request, "first")
	writeAll(t, first, make([]byte, 30), make([]byte, 10))
	finishFile(t, first, "request_file", make([]byte, 40))

	second := planFile(t, spec, stage.Request, "second")
	writeAll(t, second, make([]byte, 5))
	_, err := second.Write(make([]byte, 6)) // 100+40+5+6 = 151
	if !errors.Is(err, stage.ErrStorageFull) {
		t.Fatalf("Write = %v, want ErrStorageFull", err)
	}
	if _, again := second.Write([]byte("x")); !errors.Is(again, stage.ErrStorageFull) {
		t.Fatalf("Write after the limit = %v", again)
	}
	if _, err := second.Finish(); !errors.Is(err, stage.ErrStorageFull) {
		t.Fatalf("Finish after the limit = %v", err)
	}
	second.Abort()
	if names := dirNames(t, dir); !slices.Equal(names, []string{"first.request.body", "old"}) {
		t.Fatalf("after Abort, dir holds %q", names)
	}

	// The aborted body's 5 bytes are free again: exactly the 10 left fit.
	third := planFile(t, spec, stage.Request, "third")
	writeAll(t, third, make([]byte, 10))
	if _, err := third.Write([]byte{0}); !errors.Is(err, stage.ErrStorageFull) {
		t.Fatalf("Write past the limit = %v, want ErrStorageFull", err)
	}
	third.Abort()

	// Another spec on the same directory shares its account.
	other := newFileSpec(t, FileSpec{Dir: dir, MaxDirBytes: 145})
	o := planFile(t, other, stage.Response, "other")
	if _, err := o.Write(make([]byte, 6)); !errors.Is(err, stage.ErrStorageFull) {
		t.Fatalf("other spec: Write = %v, want ErrStorageFull", err)
	}
	o.Abort()
}

func TestFileBuild(t *testing.T) {
	dir := t.TempDir()
	notDir := filepath.Join(dir, "file")
	if err := os.WriteFile(notDir, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		spec    FileSpec
		wantErr string
	}{
		{name: "missing", spec: FileSpec{}, wantErr: "dir: required"},
		{name: "does not exist", spec: FileSpec{Dir: filepath.Join(dir, "nope")}, wantErr: "dir: "},
		{name: "not a directory", spec: FileSpec{Dir: notDir}, wantErr: "dir: "},
		{name: "negative limit", spec: FileSpec{Dir: dir, MaxDirBytes: -1}, wantErr: "max_dir_bytes: "},
	}
	if os.Geteuid() != 0 { // root writes anywhere
		readOnly := filepath.Join(dir, "ro")
		if err := os.Mkdir(readOnly, 0o555); err != nil {
			t.Fatal(err)
		}
		tests = append(tests, struct {
			name    string
			spec    FileSpec
			wantErr string
		}{name: "read-only", spec: FileSpec{Dir: readOnly}, wantErr: "dir: not writable"})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := tt.spec.Build(); err == nil || !strings.HasPrefix(err.Error(), tt.wantErr) {
				t.Fatalf("Build = %v, want an error starting with %q", err, tt.wantErr)
			}
		})
	}
	if names := dirNames(t, dir); !slices.Equal(names, []string{"file", "ro"}) && !slices.Equal(names, []string{"file"}) {
		t.Errorf("Build left %q behind", names)
	}
}

func TestFileRelativeDir(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	if err := os.Mkdir("bodies", 0o755); err != nil {
		t.Fatal(err)
	}
	spec := newFileSpec(t, FileSpec{Dir: "bodies"})
	if names := dirNames(t, "bodies"); len(names) != 0 {
		t.Fatalf("Build left %q behind", names)
	}
	// The spec holds the directory it was built for, whatever the working directory
	// is by the time a body comes.
	t.Chdir(t.TempDir())
	path := finishFile(t, planFile(t, spec, stage.Request, "rel"), "request_file", nil)
	if want := filepath.Join(dir, "bodies", "rel.request.body"); path != want {
		t.Fatalf("path %q, want %q", path, want)
	}
}

func TestFileYAML(t *testing.T) {
	dir := t.TempDir()
	doc := "dir: " + dir + "\nfsync: true\nmax_dir_bytes: 1024\n"
	spec, err := buildKind(t, "file", yamlOptions(doc))
	if err != nil {
		t.Fatal(err)
	}
	if got := FileSpec(spec.(filePlanner)); got != (FileSpec{Dir: dir, Fsync: true, MaxDirBytes: 1024}) {
		t.Fatalf("decoded %+v", got)
	}
}
