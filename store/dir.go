package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"
)

// errNotDir is what the file system says about "a/b" when "a" is a file:
// for a store, simply a missing key.
var errNotDir error = syscall.ENOTDIR

// metaDir is the reserved top-level directory of a Dir: temporary files
// and content types live there, away from the objects. Keys under it are
// refused.
const metaDir = ".turtles-store"

// Dir is a Store on a local directory. Object KEY is the file ROOT/KEY, so
// the tree can be served as it is; its content type is kept in the sidecar
// ROOT/.turtles-store/types/KEY (objects without one are
// application/octet-stream). Put writes a temporary file and renames it
// into place, so a reader never sees a partial object.
//
// A key and a key below it ("a" and "a/b") cannot both exist in a Dir.
type Dir struct {
	root string
}

var (
	_ Store   = (*Dir)(nil)
	_ Creator = (*Dir)(nil)
)

// NewDir opens (creating if needed) a store in root, and removes temporary
// files that a crashed Put left behind.
func NewDir(root string) (*Dir, error) {
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("store directory %s: %w", root, err)
	}
	d := &Dir{root: abs}
	for _, p := range []string{d.tmpDir(), filepath.Join(abs, metaDir, "types")} {
		if err := os.MkdirAll(p, 0o755); err != nil {
			return nil, fmt.Errorf("store directory %s: %w", root, err)
		}
	}
	// A temporary file older than an hour belongs to no running Put.
	entries, _ := os.ReadDir(d.tmpDir())
	for _, e := range entries {
		if info, err := e.Info(); err == nil && time.Since(info.ModTime()) > time.Hour {
			os.Remove(filepath.Join(d.tmpDir(), e.Name()))
		}
	}
	return d, nil
}

// Root is the directory holding the objects.
func (d *Dir) Root() string { return d.root }

// Path is the file that holds key, for serving it directly.
func (d *Dir) Path(key string) (string, error) {
	if err := checkDirKey(key); err != nil {
		return "", err
	}
	return filepath.Join(d.root, filepath.FromSlash(key)), nil
}

func (d *Dir) tmpDir() string { return filepath.Join(d.root, metaDir, "tmp") }

func (d *Dir) typePath(key string) string {
	return filepath.Join(d.root, metaDir, "types", filepath.FromSlash(key))
}

func checkDirKey(key string) error {
	if err := CheckKey(key); err != nil {
		return err
	}
	if key == metaDir || strings.HasPrefix(key, metaDir+"/") {
		return fmt.Errorf("bad key %q: %s/ is reserved", key, metaDir)
	}
	return nil
}

// Put implements Store.
func (d *Dir) Put(ctx context.Context, key string, r io.Reader, contentType string) error {
	path, err := d.Path(key)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	// The content first, so that a failed read leaves the old object and
	// its type alone.
	tmp, err := d.writeTemp(ctx, r)
	if err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	defer os.Remove(tmp) // a no-op after the rename
	if err := d.writeType(key, contentType); err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	return nil
}

// writeType records contentType for key, or removes the record when it is
// empty.
func (d *Dir) writeType(key, contentType string) error {
	tp := d.typePath(key)
	if contentType == "" {
		if err := os.Remove(tp); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		return nil
	}
	tmp, err := d.writeTemp(context.Background(), strings.NewReader(contentType))
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	if err := os.MkdirAll(filepath.Dir(tp), 0o755); err != nil {
		return err
	}
	return os.Rename(tmp, tp)
}

// PutNew implements Store. link(2) fails when the name exists, so the
// claim is atomic and the object is whole the moment it appears; its type
// follows (a reader in between sees application/octet-stream), and is
// never written for a key that was taken.
func (d *Dir) PutNew(ctx context.Context, key string, r io.Reader, contentType string) error {
	path, err := d.Path(key)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	tmp, err := d.writeTemp(ctx, r)
	if err != nil {
		return fmt.Errorf("put new %s: %w", key, err)
	}
	defer os.Remove(tmp)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("put new %s: %w", key, err)
	}
	if err := os.Link(tmp, path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("put new %s: %w", key, ErrExist)
		}
		return fmt.Errorf("put new %s: %w", key, err)
	}
	if err := d.writeType(key, contentType); err != nil {
		return fmt.Errorf("put new %s: %w", key, err)
	}
	return nil
}

// writeTemp copies r to a new temporary file on the same file system as
// the objects, ready to be renamed into place.
func (d *Dir) writeTemp(ctx context.Context, r io.Reader) (string, error) {
	var rnd [8]byte
	rand.Read(rnd[:])
	tmp := filepath.Join(d.tmpDir(), hex.EncodeToString(rnd[:]))
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return "", err
	}
	_, err = io.Copy(f, ctxReader{ctx, r})
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return "", err
	}
	return tmp, nil
}

// ctxReader stops a long copy when its context ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// Create implements Creator. The file is the object itself, so a log
// written into it is stored once, and served while it grows.
func (d *Dir) Create(ctx context.Context, key, contentType string) (*os.File, error) {
	path, err := d.Path(key)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := d.writeType(key, contentType); err != nil {
		return nil, fmt.Errorf("create %s: %w", key, err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("create %s: %w", key, err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, fmt.Errorf("create %s: %w", key, err)
	}
	return f, nil
}

// Get implements Store.
func (d *Dir) Get(ctx context.Context, key string) (io.ReadCloser, Info, error) {
	path, err := d.Path(key)
	if err != nil {
		return nil, Info{}, err
	}
	if err := ctx.Err(); err != nil {
		return nil, Info{}, err
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, Info{}, d.notExist(key, err)
	}
	fi, err := f.Stat()
	if err == nil && !fi.Mode().IsRegular() {
		err = fs.ErrNotExist
	}
	if err != nil {
		f.Close()
		return nil, Info{}, d.notExist(key, err)
	}
	return f, d.info(key, fi), nil
}

// Stat implements Store.
func (d *Dir) Stat(ctx context.Context, key string) (Info, error) {
	path, err := d.Path(key)
	if err != nil {
		return Info{}, err
	}
	if err := ctx.Err(); err != nil {
		return Info{}, err
	}
	fi, err := os.Stat(path)
	if err == nil && !fi.Mode().IsRegular() {
		err = fs.ErrNotExist
	}
	if err != nil {
		return Info{}, d.notExist(key, err)
	}
	return d.info(key, fi), nil
}

// notExist maps "no such file" and "a/b where a is a file" to ErrNotExist.
func (d *Dir) notExist(key string, err error) error {
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, errNotDir) {
		return fmt.Errorf("%s: %w", key, ErrNotExist)
	}
	return fmt.Errorf("%s: %w", key, err)
}

func (d *Dir) info(key string, fi fs.FileInfo) Info {
	ct := "application/octet-stream"
	if b, err := os.ReadFile(d.typePath(key)); err == nil {
		ct = string(b)
	}
	return Info{Key: key, Size: fi.Size(), ContentType: ct, Modified: fi.ModTime()}
}

// List implements Store.
func (d *Dir) List(ctx context.Context, prefix string) ([]Info, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	// Walk only the deepest directory the prefix names in full.
	start := d.root
	if i := strings.LastIndex(prefix, "/"); i >= 0 {
		dir := prefix[:i]
		if err := checkDirKey(dir); err != nil {
			return nil, fmt.Errorf("list %q: %w", prefix, err)
		}
		start = filepath.Join(d.root, filepath.FromSlash(dir))
	}
	var out []Info
	err := filepath.WalkDir(start, func(path string, e fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) || errors.Is(err, errNotDir) {
				return nil
			}
			return err
		}
		rel, _ := filepath.Rel(d.root, path)
		key := filepath.ToSlash(rel)
		if e.IsDir() {
			if key == metaDir {
				return fs.SkipDir
			}
			return nil
		}
		if !e.Type().IsRegular() || !strings.HasPrefix(key, prefix) {
			return nil
		}
		fi, err := e.Info()
		if err != nil {
			return nil // removed while we walked
		}
		out = append(out, d.info(key, fi))
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list %q: %w", prefix, err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}

// Delete implements Store.
func (d *Dir) Delete(ctx context.Context, key string) error {
	path, err := d.Path(key)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if fi, err := os.Lstat(path); err == nil && fi.IsDir() {
		return nil // only keys below it exist
	}
	for _, p := range []string{path, d.typePath(key)} {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, errNotDir) {
			return fmt.Errorf("delete %s: %w", key, err)
		}
	}
	return nil
}
