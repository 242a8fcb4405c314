package stages

import (
	cryptorand "crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/bodystream/bodystream/stage"
)

// The "file" observer writes a body to a file of its own in a directory: to a hidden
// temporary file while it streams, renamed into place (never over another file) when
// the body is complete, removed when it is not.
//
// Writes go straight to the file, with no bufio.Writer: the pipeline hands an observer
// whole chunks (Envoy's body chunks are typically 16 KiB and more), for which one write
// system call each is cheap, while a 64 KiB buffer per body in flight would multiply
// the server's memory by its concurrency and copy every byte once more.

func init() {
	register("file", func() FileSpec { return FileSpec{} })
}

const (
	// maxFileIDLen caps the request-id part of a file name, well within the 255 bytes
	// file systems allow for a name with its suffixes.
	maxFileIDLen = 128
	// fileNameAttempts is how many names Finish tries when <id>.<direction>.body exists:
	// numeric suffixes 1, 2, ... first, random ones after.
	fileNameAttempts = 128
)

// FileSpec configures the "file" observer.
//
//	kind: file
//	dir: /var/lib/bodystream/bodies   # must exist and be writable
//	fsync: true                       # sync file and directory before reporting
//	max_dir_bytes: 10737418240        # 0: unlimited
//
// A body goes to <dir>/<request-id>.<direction>.body, the request id reduced to
// [A-Za-z0-9._-] and 128 bytes (a random hex id when there is none); a name already
// taken gets a numeric suffix, <request-id>.<direction>.1.body.
type FileSpec struct {
	Dir         string `yaml:"dir"`
	Fsync       bool   `yaml:"fsync"`
	MaxDirBytes int64  `yaml:"max_dir_bytes"`
}

// Build checks that dir is a directory where files can be created and hard-linked
// (Finish links the finished file to its name, which unlike a rename never replaces
// another file), and makes dir absolute.
func (s FileSpec) Build() (stage.Spec, error) {
	if s.Dir == "" {
		return nil, errors.New("dir: required")
	}
	if s.MaxDirBytes < 0 {
		return nil, fmt.Errorf("max_dir_bytes: must be 0 (unlimited) or more, got %d", s.MaxDirBytes)
	}
	dir, err := filepath.Abs(s.Dir)
	if err != nil {
		return nil, fmt.Errorf("dir: %w", err)
	}
	info, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("dir: %w", err)
	}
	if !info.IsDir() {
		return nil, fmt.Errorf("dir: %s is not a directory", dir)
	}
	probe, err := os.CreateTemp(dir, ".bodystream-probe-*.tmp")
	if err != nil {
		return nil, fmt.Errorf("dir: not writable: %w", err)
	}
	probePath := probe.Name()
	defer os.Remove(probePath)
	if err := probe.Close(); err != nil {
		return nil, fmt.Errorf("dir: not writable: %w", err)
	}
	linkPath := probePath + ".link"
	if err := os.Link(probePath, linkPath); err != nil && !errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("dir: cannot hard-link files, which commits them without overwriting: %w", err)
	}
	if err := os.Remove(linkPath); err != nil {
		return nil, fmt.Errorf("dir: removing probe: %w", err)
	}
	if err := os.Remove(probePath); err != nil {
		return nil, fmt.Errorf("dir: removing probe: %w", err)
	}
	s.Dir = dir
	return filePlanner(s), nil
}

// filePlanner is a built file step: Dir is absolute and writable.
type filePlanner FileSpec

func (s filePlanner) Name() string { return "file" }

func (s filePlanner) PreviewSize(*stage.Message) int { return 0 }

// Plan opens the temporary file of one body.
func (s filePlanner) Plan(m *stage.Message, _ []byte) (stage.Step, error) {
	id := safeFileID(m.RequestID)
	if id == "" {
		var random [16]byte
		cryptorand.Read(random[:]) // never fails (crypto/rand crashes the program instead)
		id = hex.EncodeToString(random[:])
	}
	o := &fileObserver{
		dir:         s.Dir,
		base:        id + "." + m.Direction.String(),
		metadataKey: m.Direction.String() + "_file",
		fsync:       s.Fsync,
		maxDirBytes: s.MaxDirBytes,
	}
	if s.MaxDirBytes > 0 {
		account, err := dirAccountFor(s.Dir)
		if err != nil {
			return stage.Step{}, err
		}
		o.account = account
	}
	tmp, err := os.CreateTemp(s.Dir, "."+o.base+".body.*.tmp")
	if err != nil {
		return stage.Step{}, err
	}
	o.tmp, o.tmpPath = tmp, tmp.Name()
	return stage.Step{Observer: o}, nil
}

// safeFileID reduces a request id to a file name part: [A-Za-z0-9._-], every other
// character replaced by '_', at most maxFileIDLen bytes. A leading '.' becomes '_' too,
// so that a body's file is never hidden and never taken for a temporary file (which
// are the hidden ones).
func safeFileID(id string) string {
	var b strings.Builder
	for _, r := range id {
		if b.Len() == maxFileIDLen {
			break
		}
		switch {
		case 'a' <= r && r <= 'z', 'A' <= r && r <= 'Z', '0' <= r && r <= '9', r == '-', r == '_':
			b.WriteRune(r)
		case r == '.' && b.Len() > 0:
			b.WriteByte('.')
		default:
			b.WriteByte('_')
		}
	}
	return b.String()
}

// fileObserver writes one body to its temporary file.
type fileObserver struct {
	dir         string
	base        string // "<safe-id>.<direction>"
	metadataKey string // "<direction>_file"
	fsync       bool
	maxDirBytes int64
	account     *dirAccount // nil: unlimited

	tmp      *os.File // nil once closed
	tmpPath  string   // "" once removed
	reserved int64    // bytes of this body counted in account
	final    string   // path of the committed file, once Finish succeeded
	err      error    // the first error, returned by every later call
}

func (o *fileObserver) Write(p []byte) (int, error) {
	if o.err != nil {
		return 0, o.err
	}
	if o.tmp == nil {
		return 0, errors.New("file: write after Finish or Abort")
	}
	if o.account != nil {
		n := int64(len(p))
		if !o.account.reserve(n, o.maxDirBytes) {
			o.err = fmt.Errorf("%s: %d more bytes would exceed max_dir_bytes %d: %w", o.dir, n, o.maxDirBytes, stage.ErrStorageFull)
			return 0, o.err
		}
		o.reserved += n
	}
	n, err := o.tmp.Write(p)
	if err != nil {
		o.err = err // an *fs.PathError, which names the file
	}
	return n, err
}

// Finish commits the file under its final name and reports it as metadata
// "<direction>_file". When it fails it leaves no file, temporary or final.
func (o *fileObserver) Finish() (stage.Result, error) {
	if o.final != "" {
		return o.result(), nil
	}
	if o.err != nil {
		o.discard()
		return stage.Result{}, o.err
	}
	if o.tmp == nil {
		return stage.Result{}, errors.New("file: Finish after Abort")
	}
	if err := o.commit(); err != nil {
		o.err = err
		o.discard()
		return stage.Result{}, err
	}
	return o.result(), nil
}

func (o *fileObserver) result() stage.Result {
	return stage.Result{Metadata: map[string]string{o.metadataKey: o.final}}
}

func (o *fileObserver) commit() error {
	if o.fsync {
		if err := o.tmp.Sync(); err != nil {
			return err
		}
	}
	err := o.tmp.Close()
	o.tmp = nil
	if err != nil {
		return err
	}
	final, err := o.link()
	if err != nil {
		return err
	}
	// Until the temporary name is gone and (with fsync) the directory synced, the body
	// is not committed: undo the link on failure so that an error means no file.
	if err := os.Remove(o.tmpPath); err != nil {
		os.Remove(final)
		return err
	}
	o.tmpPath = ""
	if o.fsync {
		if err := syncDir(o.dir); err != nil {
			os.Remove(final)
			return err
		}
	}
	o.final = final
	return nil
}

// link gives the temporary file its final name, adding a suffix while the name is
// taken. os.Link fails when the name exists where os.Rename would replace the file.
func (o *fileObserver) link() (string, error) {
	for attempt := range fileNameAttempts {
		name := o.base + ".body"
		switch {
		case attempt >= fileNameAttempts/2:
			// So many duplicates of one id that counting on is slow; a random suffix
			// finds a free name at once.
			name = o.base + "." + strconv.FormatUint(rand.Uint64(), 10) + ".body"
		case attempt > 0:
			name = o.base + "." + strconv.Itoa(attempt) + ".body"
		}
		final := filepath.Join(o.dir, name)
		err := os.Link(o.tmpPath, final)
		if err == nil {
			return final, nil
		}
		if !errors.Is(err, fs.ErrExist) {
			return "", err
		}
	}
	return "", fmt.Errorf("%s: no free name for %s.body after %d attempts", o.dir, o.base, fileNameAttempts)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	if err := d.Sync(); err != nil {
		d.Close()
		return err
	}
	return d.Close()
}

// Abort removes the temporary file and releases its bytes. It does nothing once the
// file was committed, or on a second call.
func (o *fileObserver) Abort() {
	if o.final != "" {
		return
	}
	o.discard()
}

// discard closes and removes the temporary file and releases its reserved bytes. Its
// errors have no one to go to: a file that could not be removed stays, hidden, and is
// still counted in its directory's bytes (and counted again by the next process).
func (o *fileObserver) discard() {
	if o.tmp != nil {
		o.tmp.Close() // the file is removed next: a close error loses nothing
		o.tmp = nil
	}
	if o.tmpPath != "" {
		if err := os.Remove(o.tmpPath); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return // the bytes still take room: keep them reserved
		}
		o.tmpPath = ""
	}
	if o.account != nil {
		o.account.release(o.reserved)
		o.reserved = 0
	}
}

// dirAccount counts the bytes in one directory, process-wide: the regular files found
// on first use plus the bytes written since by bodies that were not aborted. Files that
// others remove from the directory are not noticed until the process restarts.
type dirAccount struct {
	used atomic.Int64
}

var (
	dirAccountsMu sync.Mutex
	dirAccounts   = map[string]*dirAccount{}
)

// dirAccountFor returns dir's account, summing the directory on first use.
func dirAccountFor(dir string) (*dirAccount, error) {
	dirAccountsMu.Lock()
	defer dirAccountsMu.Unlock()
	if a := dirAccounts[dir]; a != nil {
		return a, nil
	}
	used, err := regularFileBytes(dir)
	if err != nil {
		return nil, err
	}
	a := &dirAccount{}
	a.used.Store(used)
	dirAccounts[dir] = a
	return a, nil
}

func regularFileBytes(dir string) (int64, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return 0, err
	}
	var total int64
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		info, err := e.Info()
		if errors.Is(err, fs.ErrNotExist) {
			continue // removed since ReadDir
		}
		if err != nil {
			return 0, err
		}
		total += info.Size()
	}
	return total, nil
}

// reserve counts n more bytes unless that would take the directory past limit.
func (a *dirAccount) reserve(n, limit int64) bool {
	for {
		used := a.used.Load()
		if used+n > limit {
			return false
		}
		if a.used.CompareAndSwap(used, used+n) {
			return true
		}
	}
}

func (a *dirAccount) release(n int64) {
	a.used.Add(-n)
}
