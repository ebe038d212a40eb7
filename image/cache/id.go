package cache

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/turtles-ci/turtles/image"
)

// ID names a pinned image: NAME-SHA256, where SHA256 is the hash of the
// bytes of its manifest, stored as ID.json. The manifest lists every file
// of the image with its own sha256, so the ID pins them all.
type ID string

// ParseID checks that s is NAME-HEX with a valid image name and 64
// lowercase hex digits.
func ParseID(s string) (ID, error) {
	i := strings.LastIndexByte(s, '-')
	if i <= 0 || !image.ValidName(s) || !isHex(s[i+1:]) {
		return "", fmt.Errorf("image %q is not pinned: want NAME-SHA256 (64 lowercase hex digits)", s)
	}
	return ID(s), nil
}

// Name is the image's name without the hash, e.g. "debian-12".
func (id ID) Name() string { return string(id[:strings.LastIndexByte(string(id), '-')]) }

// Hash is the sha256 of the manifest, in hex.
func (id ID) Hash() string { return string(id[strings.LastIndexByte(string(id), '-')+1:]) }

// Short is the ID with its hash cut to 12 digits, for people: enough to
// tell pins apart, short enough for a commit status.
func (id ID) Short() string {
	if h := id.Hash(); len(h) > 12 {
		return string(id[:len(id)-len(h)+12])
	}
	return string(id)
}

// ManifestFile is the manifest's file name in a cache or on a source.
func (id ID) ManifestFile() string { return string(id) + ".json" }

func isHex(s string) bool {
	if len(s) != sha256.Size*2 {
		return false
	}
	for _, c := range s {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// File is one file of an image: its name beside the manifest, the sha256
// of its content and its size in bytes (0 in manifests pinned before
// sizes were recorded).
type File struct {
	Name   string
	SHA256 string
	Size   int64
}

// maxManifest bounds a manifest read from a source.
const maxManifest = 1 << 20

// parseManifest checks that b is the manifest id names and returns it with
// its files. It trusts nothing in b until the hash matches.
func parseManifest(id ID, b []byte) (*image.Manifest, []File, error) {
	sum := sha256.Sum256(b)
	if got := hex.EncodeToString(sum[:]); got != id.Hash() {
		return nil, nil, &mismatchError{file: id.ManifestFile(), got: got}
	}
	var m image.Manifest
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return nil, nil, fmt.Errorf("manifest %s: %w", id.ManifestFile(), err)
	}
	if m.Name != id.Name() {
		return nil, nil, fmt.Errorf("manifest %s names image %q", id.ManifestFile(), m.Name)
	}
	files, err := manifestFiles(&m)
	if err != nil {
		return nil, nil, fmt.Errorf("manifest %s: %w", id.ManifestFile(), err)
	}
	return &m, files, nil
}

// manifestFiles lists the files of a pinned manifest, refusing names that
// are not plain file names or files without a hash.
func manifestFiles(m *image.Manifest) ([]File, error) {
	var files []File
	for _, f := range []struct {
		what, name, sum string
		size            int64
	}{
		{"disk", m.Disk, m.SHA256, m.Size},
		{"kernel", m.Kernel, m.KernelSHA256, m.KernelSize},
		{"initrd", m.Initrd, m.InitrdSHA256, m.InitrdSize},
	} {
		if f.name == "" && f.what != "disk" {
			if f.sum != "" || f.size != 0 {
				return nil, fmt.Errorf("%s sha256 or size without a %s", f.what, f.what)
			}
			continue
		}
		if !plainName(f.name) {
			return nil, fmt.Errorf("%s %q is not a plain file name", f.what, f.name)
		}
		if !isHex(f.sum) {
			return nil, fmt.Errorf("%s %s has no sha256", f.what, f.name)
		}
		if f.size < 0 {
			return nil, fmt.Errorf("%s %s has a negative size", f.what, f.name)
		}
		files = append(files, File{Name: f.name, SHA256: f.sum, Size: f.size})
	}
	return files, nil
}

// ErrNoSizes is wrapped by the error of a fetch whose manifest records no
// file sizes: it was pinned before sizes were recorded, and without them
// a source could send without end. Such a manifest is used only from the
// cache itself, which verified its files; pin the image again (`turtles
// image pin`, then push it to the mirrors) to fetch it.
var ErrNoSizes = errors.New("manifest records no file sizes")

// TooLargeError is the error of a fetch whose manifest claims more bytes
// than the cache's MaxImageSize.
type TooLargeError struct {
	ID    ID
	Total int64
	Max   int64
}

func (e *TooLargeError) Error() string {
	return fmt.Sprintf("image %s claims %d bytes, more than the %d this host fetches (--image-max-size)", e.ID, e.Total, e.Max)
}

// checkSizes refuses to fetch files whose sizes the manifest does not
// record, or whose total is above max (0: no total limit). The sum of
// the (at most three) sizes cannot overflow: each is below 1<<60 or
// refused.
func checkSizes(id ID, files []File, max int64) error {
	var total int64
	for _, f := range files {
		if f.Size <= 0 {
			return fmt.Errorf("%s: %s: %w (pinned by an older turtles; pin it again with `turtles image pin` and push it)", id.ManifestFile(), f.Name, ErrNoSizes)
		}
		if f.Size >= 1<<60 {
			return &TooLargeError{ID: id, Total: f.Size, Max: max}
		}
		total += f.Size
	}
	if max > 0 && total > max {
		return &TooLargeError{ID: id, Total: total, Max: max}
	}
	return nil
}

// plainName reports whether s may name a file of an image in the cache
// directory: no path, not hidden (temporary files and locks are), not a
// manifest.
func plainName(s string) bool {
	return image.ValidName(s) && !strings.HasSuffix(s, ".json")
}

// Import adds the image whose manifest is at path (as `turtles image
// build` writes it) to the cache and returns its ID: each file is hashed
// and linked (or copied) into the cache as NAME-SHA256.EXT, and a pinned
// manifest naming them is written as ID.json. Importing twice gives the
// same ID unless the files changed.
func (c *Cache) Import(path string) (ID, error) {
	m, err := image.Load(path)
	if err != nil {
		return "", err
	}
	if err := c.init(); err != nil {
		return "", err
	}
	p := *m
	for _, f := range []struct {
		name, sum *string
		size      *int64
	}{
		{&p.Disk, &p.SHA256, &p.Size}, {&p.Kernel, &p.KernelSHA256, &p.KernelSize}, {&p.Initrd, &p.InitrdSHA256, &p.InitrdSize},
	} {
		if *f.name == "" {
			continue
		}
		sum, err := image.HashFile(*f.name)
		if err != nil {
			return "", fmt.Errorf("import image %s: %w", path, err)
		}
		fi, err := os.Stat(*f.name)
		if err != nil {
			return "", fmt.Errorf("import image %s: %w", path, err)
		}
		*f.size = fi.Size()
		if f.sum == &p.SHA256 && m.SHA256 != "" && m.SHA256 != sum {
			return "", fmt.Errorf("import image %s: disk %s has sha256 %s, the manifest says %s", path, *f.name, sum, m.SHA256)
		}
		name := fmt.Sprintf("%s-%s%s", m.Name, sum, filepath.Ext(*f.name))
		if err := c.place(*f.name, name); err != nil {
			return "", fmt.Errorf("import image %s: %w", path, err)
		}
		*f.name, *f.sum = name, sum
	}
	if p.User == image.DefaultUser {
		p.User = "" // as Load would fill it in
	}
	b, err := json.MarshalIndent(&p, "", "  ")
	if err != nil {
		return "", err
	}
	b = append(b, '\n')
	sum := sha256.Sum256(b)
	id, err := ParseID(m.Name + "-" + hex.EncodeToString(sum[:]))
	if err != nil {
		return "", err
	}
	if _, err := os.Stat(c.path(id.ManifestFile())); err == nil {
		return id, nil
	}
	if err := writeAtomic(c.path(id.ManifestFile()), b, c.tmpDir()); err != nil {
		return "", fmt.Errorf("import image %s: %w", path, err)
	}
	return id, nil
}

// place puts src into the cache as name: a hard link where the file
// system allows, else a copy. An existing name is kept: it holds the same
// bytes, as names carry the hash.
func (c *Cache) place(src, name string) error {
	dst := c.path(name)
	if _, err := os.Stat(dst); err == nil {
		return nil
	}
	tmp := filepath.Join(c.tmpDir(), name+".import")
	os.Remove(tmp)
	if err := os.Link(src, tmp); err != nil {
		if err := copyFile(src, tmp); err != nil {
			os.Remove(tmp)
			return err
		}
	}
	if err := os.Rename(tmp, dst); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o444)
	if err != nil {
		return err
	}
	if _, err := io.CopyBuffer(out, in, make([]byte, bufSize)); err != nil {
		out.Close()
		return diskError(dst, err)
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return diskError(dst, err)
	}
	return out.Close()
}

// writeAtomic writes b to path through a temporary file in tmpDir.
func writeAtomic(path string, b []byte, tmpDir string) error {
	f, err := os.CreateTemp(tmpDir, filepath.Base(path)+".*")
	if err != nil {
		return diskError(path, err)
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(f.Name(), 0o444)
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
		return diskError(path, err)
	}
	return nil
}

// mismatchError is a file whose bytes do not have the expected sha256.
type mismatchError struct {
	file, got string
}

func (e *mismatchError) Error() string {
	return fmt.Sprintf("%s: sha256 mismatch (got %s)", e.file, e.got)
}

func isMismatch(err error) bool {
	var m *mismatchError
	return errors.As(err, &m)
}
