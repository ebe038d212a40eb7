package cache

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"

	"github.com/turtles-ci/turtles/store"
)

// Target is where Push uploads an image: a mirror.
type Target interface {
	String() string
	// Has reports whether the target has name already (names carry the
	// hash, so it is the same content).
	Has(ctx context.Context, name string) (bool, error)
	// Put uploads size bytes of r as name.
	Put(ctx context.Context, name string, r io.Reader, size int64) error
}

// Push uploads a pinned image from the cache to t: its files first, the
// manifest last, so that a mirror never lists an image it cannot serve.
// Files the target has already are skipped.
func (c *Cache) Push(ctx context.Context, id ID, t Target) error {
	_, files, ok := c.lookup(id)
	if !ok {
		return fmt.Errorf("push %s: not in the cache %s", id, c.Dir())
	}
	// A mirror's manifest without sizes could not be fetched from it.
	if err := checkSizes(id, files, 0); err != nil {
		return fmt.Errorf("push %s: %w", id, err)
	}
	names := make([]string, 0, len(files)+1)
	for _, f := range files {
		names = append(names, f.Name)
	}
	for _, name := range append(names, id.ManifestFile()) {
		has, err := t.Has(ctx, name)
		if err != nil {
			return fmt.Errorf("push %s to %s: %w", id, t, err)
		}
		if has {
			c.log.Info("already there", "file", name, "target", t.String())
			continue
		}
		if err := c.putFile(ctx, t, name); err != nil {
			return fmt.Errorf("push %s to %s: %w", id, t, err)
		}
		c.log.Info("pushed", "file", name, "target", t.String())
	}
	return nil
}

func (c *Cache) putFile(ctx context.Context, t Target, name string) error {
	f, err := os.Open(c.path(name))
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	return t.Put(ctx, name, io.NewSectionReader(f, 0, fi.Size()), fi.Size())
}

// HTTPTarget uploads with PUT to a directory URL (a WebDAV-style mirror).
type HTTPTarget struct{ HTTP }

// Has implements Target with HEAD.
func (h *HTTPTarget) Has(ctx context.Context, name string) (bool, error) {
	err := h.Stat(ctx, name)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	return err == nil, err
}

// Put implements Target.
func (h *HTTPTarget) Put(ctx context.Context, name string, r io.Reader, size int64) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, h.url(name), r)
	if err != nil {
		return err
	}
	req.ContentLength = size
	resp, err := h.client().Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("PUT %s: %s", name, resp.Status)
	}
	return nil
}

// StoreTarget uploads to a store.Store, such as S3.
type StoreTarget struct {
	Store store.Store
	Name  string
}

func (s *StoreTarget) String() string { return s.Name }

// Has implements Target.
func (s *StoreTarget) Has(ctx context.Context, name string) (bool, error) {
	_, err := s.Store.Stat(ctx, name)
	if errors.Is(err, store.ErrNotExist) {
		return false, nil
	}
	return err == nil, err
}

// Put implements Target. r is an *io.SectionReader, whose size the S3
// store sends as the length.
func (s *StoreTarget) Put(ctx context.Context, name string, r io.Reader, _ int64) error {
	return s.Store.Put(ctx, name, r, "application/octet-stream")
}
