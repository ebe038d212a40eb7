package ociimage

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// extract writes a tar stream (a flattened image) under dst. A name or a
// hard link that would leave dst is an error; symbolic links are written
// as they are (they point into the image's own root once it is chrooted).
func extract(ctx context.Context, r io.Reader, dst string) error {
	tr := tar.NewReader(r)
	type dirTime struct {
		path string
		t    time.Time
	}
	var dirs []dirTime
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("unpack: %w", err)
		}
		name := filepath.Clean(strings.TrimPrefix(hdr.Name, "/"))
		if name == "." {
			continue
		}
		if name == ".." || strings.HasPrefix(name, "../") {
			return fmt.Errorf("unpack: %q leaves the root", hdr.Name)
		}
		path := filepath.Join(dst, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return err
		}
		mode := os.FileMode(hdr.Mode & 0o777)
		if hdr.Mode&04000 != 0 {
			mode |= os.ModeSetuid
		}
		if hdr.Mode&02000 != 0 {
			mode |= os.ModeSetgid
		}
		if hdr.Mode&01000 != 0 {
			mode |= os.ModeSticky
		}
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := os.Mkdir(path, 0o700); err != nil && !os.IsExist(err) {
				return err
			}
			dirs = append(dirs, dirTime{path, hdr.ModTime})
		case tar.TypeReg:
			os.Remove(path)
			f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o600)
			if err != nil {
				return err
			}
			if _, err := io.Copy(f, tr); err != nil {
				f.Close()
				return fmt.Errorf("unpack %s: %w", name, err)
			}
			if err := f.Close(); err != nil {
				return err
			}
		case tar.TypeSymlink:
			os.Remove(path)
			if err := os.Symlink(hdr.Linkname, path); err != nil {
				return err
			}
			if err := os.Lchown(path, hdr.Uid, hdr.Gid); err != nil && os.Geteuid() == 0 {
				return err
			}
			continue
		case tar.TypeLink:
			target := filepath.Clean(strings.TrimPrefix(hdr.Linkname, "/"))
			if target == ".." || strings.HasPrefix(target, "../") {
				return fmt.Errorf("unpack: hard link %q leaves the root", hdr.Linkname)
			}
			os.Remove(path)
			if err := os.Link(filepath.Join(dst, target), path); err != nil {
				return err
			}
			continue
		default:
			continue // devices and FIFOs: the runtime provides /dev
		}
		if os.Geteuid() == 0 {
			if err := os.Lchown(path, hdr.Uid, hdr.Gid); err != nil {
				return err
			}
		}
		if err := os.Chmod(path, mode); err != nil {
			return err
		}
		if hdr.Typeflag == tar.TypeReg {
			os.Chtimes(path, hdr.ModTime, hdr.ModTime)
		}
	}
	for _, d := range dirs {
		os.Chtimes(d.path, d.t, d.t)
	}
	return nil
}
