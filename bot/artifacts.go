package bot

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"mime"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/turtles-ci/turtles"
	"github.com/turtles-ci/turtles/scrub"
	"github.com/turtles-ci/turtles/store"
)

// maxArtifactBytes bounds what one attempt uploads from TURTLES_ARTIFACTS.
const maxArtifactBytes = 1 << 30

// uploadArtifacts stores the regular files under dir (the task's
// TURTLES_ARTIFACTS, with the guest's files and journal under vm/) under
// prefix+"artifacts/". Symbolic links are not followed: a task must not
// publish the bot's files.
//
// When the task had secrets, every file is scrubbed like the log before it
// is stored, and a file that is not text is not stored at all: a binary
// format (compressed, encoded, UTF-16) hides a secret from the scrubber.
func (b *Bot) uploadArtifacts(ctx context.Context, prefix, dir string, scr *scrub.Scrubber, out io.Writer) error {
	var total int64
	n := 0
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return turtles.InfraFault("the bot could not read the artifacts", err)
		}
		if d.IsDir() {
			return nil
		}
		rel, _ := filepath.Rel(dir, path)
		// A secret in a file name must not become part of a public key.
		rel = scr.String(filepath.ToSlash(rel))
		key := prefix + store.ArtifactsName + rel
		if !d.Type().IsRegular() {
			logf(out, "artifact %s skipped: not a regular file", rel)
			return nil
		}
		if err := store.CheckKey(key); err != nil {
			logf(out, "artifact %s skipped: bad name", rel)
			return nil
		}
		f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
		if err != nil {
			logf(out, "artifact %s skipped: %v", rel, err)
			return nil
		}
		defer f.Close()
		fi, err := f.Stat()
		if err != nil || !fi.Mode().IsRegular() {
			return nil
		}
		if total+fi.Size() > maxArtifactBytes {
			logf(out, "artifact %s skipped: artifacts are limited to %d MiB", rel, maxArtifactBytes>>20)
			return nil
		}
		text, err := sniffText(f)
		if err != nil {
			return turtles.InfraFault(truncate("the bot could not read artifact "+rel), fmt.Errorf("read artifact %s: %w", rel, err))
		}
		if !text && !scr.Empty() {
			logf(out, "artifact %s skipped: this task had secrets, and only text can be scrubbed of them", rel)
			return nil
		}
		body, done, err := scrubbed(f, fi.Size(), scr)
		if err != nil {
			return turtles.InfraFault(truncate("the bot could not scrub artifact "+rel+" of secrets"), fmt.Errorf("scrub artifact %s: %w", rel, err))
		}
		defer done()
		ct := mime.TypeByExtension(filepath.Ext(rel))
		switch {
		case ct != "":
		case text:
			// test.tap, build.log: readable in the browser, and as plain
			// text never rendered, whatever it holds.
			ct = "text/plain; charset=utf-8"
		default:
			ct = "application/octet-stream"
		}
		if err := b.cfg.Store.Put(ctx, key, body, ct); err != nil {
			return turtles.InfraFault(truncate("the bot could not store artifact "+rel), fmt.Errorf("upload artifact %s: %w", rel, err))
		}
		total += fi.Size()
		n++
		return nil
	})
	if err != nil {
		return fmt.Errorf("upload artifacts: %w", err)
	}
	if n > 0 {
		logf(out, "uploaded %d artifacts (%d bytes)", n, total)
	}
	return nil
}

// scrubbed returns the first size bytes of f as they are to be stored, and
// a function to call once they are. Without secrets that is f itself.
// With them, f (text: see sniffText) is scrubbed into an unnamed temporary
// file, whose length the store is told (see store/s3's Put).
func scrubbed(f *os.File, size int64, scr *scrub.Scrubber) (io.Reader, func(), error) {
	if scr.Empty() {
		return io.LimitReader(f, size), func() {}, nil
	}
	tmp, err := os.CreateTemp("", "turtles-artifact-")
	if err != nil {
		return nil, nil, err
	}
	os.Remove(tmp.Name()) // gone with the last close, whatever happens
	w := scr.NewWriter(tmp)
	if _, err := io.Copy(w, io.LimitReader(f, size)); err != nil {
		tmp.Close()
		return nil, nil, err
	}
	if err := w.Flush(); err != nil {
		tmp.Close()
		return nil, nil, err
	}
	n, err := tmp.Seek(0, io.SeekCurrent)
	if err != nil {
		tmp.Close()
		return nil, nil, err
	}
	return io.NewSectionReader(tmp, 0, n), func() { tmp.Close() }, nil
}

// sniffText reports whether f is text (see isText) from its first 512
// bytes, and leaves f at its start.
func sniffText(f *os.File) (bool, error) {
	head := make([]byte, 512)
	k, err := io.ReadFull(f, head)
	if err != nil && err != io.EOF && err != io.ErrUnexpectedEOF {
		return false, err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return false, err
	}
	return isText(head[:k]), nil
}

// isText reports whether a file starting with head is text in an encoding
// the scrubber reads (ASCII or UTF-8): JUnit and TAP reports, journals,
// logs, JSON, SVG and HTML are; images, archives and UTF-16 are not.
func isText(head []byte) bool {
	ct := http.DetectContentType(head)
	return strings.HasPrefix(ct, "text/") && strings.HasSuffix(ct, "charset=utf-8")
}
