// Package store keeps logs, results and artifacts of task attempts. The
// Store interface has a local-directory backend here (Dir) and an S3
// backend in store/s3; both pass the contract suite in store/storetest.
//
// Objects are named by slash-separated keys. Every attempt lives under the
// stable prefix AttemptPrefix(task): OWNER/REPO/SHA/CONTEXT/ATTEMPT/, holding
// "log", "result.json" and "artifacts/...".
package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"
	"time"

	"github.com/turtles-ci/turtles"
)

// ErrNotExist is returned (wrapped) by Get and Stat for a missing key.
var ErrNotExist = errors.New("object does not exist")

// Store is a flat key/value store of files.
type Store interface {
	// Put stores the whole of r under key, replacing what was there. A
	// reader never sees a partial object.
	Put(ctx context.Context, key string, r io.Reader, contentType string) error
	// Get opens key. ErrNotExist if it is missing.
	Get(ctx context.Context, key string) (io.ReadCloser, Info, error)
	// Stat describes key. ErrNotExist if it is missing.
	Stat(ctx context.Context, key string) (Info, error)
	// List returns the objects whose keys start with prefix, sorted by key.
	List(ctx context.Context, prefix string) ([]Info, error)
	// Delete removes key; deleting a missing key is not an error.
	Delete(ctx context.Context, key string) error
}

// Info describes a stored object.
type Info struct {
	Key         string    `json:"key"`
	Size        int64     `json:"size"`
	ContentType string    `json:"content_type,omitempty"`
	Modified    time.Time `json:"modified"`
}

// AttemptPrefix is where one attempt of a task keeps its files.
func AttemptPrefix(t turtles.Task) string {
	return fmt.Sprintf("%s/%s/%s/%d/", t.Repo.Name, t.SHA, escapeContext(t.Context), t.Attempt)
}

// Well-known names under AttemptPrefix.
const (
	LogName       = "log"
	ResultName    = "result.json"
	ArtifactsName = "artifacts/"
)

// escapeContext keeps a context name such as "debian-12/firefox" one path
// segment: "debian-12~firefox". Context names never contain "~", so the
// mapping is one to one.
func escapeContext(c string) string {
	return url.PathEscape(strings.ReplaceAll(c, "/", "~"))
}

// CheckKey refuses keys that could escape a directory or are not clean.
func CheckKey(key string) error {
	if key == "" || strings.HasPrefix(key, "/") || strings.Contains(key, "\\") {
		return fmt.Errorf("bad key %q", key)
	}
	for _, seg := range strings.Split(key, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return fmt.Errorf("bad key %q", key)
		}
	}
	return nil
}
