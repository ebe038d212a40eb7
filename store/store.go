// Package store keeps logs, results and artifacts of task attempts. The
// Store interface has a local-directory backend here (Dir) and an S3
// backend in store/s3; both pass the contract suite in store/storetest.
//
// Objects are named by slash-separated keys. Every attempt lives under the
// stable prefix AttemptPrefix(task): OWNER/REPO/SHA/CONTEXT/ATTEMPT/, holding
// "claim.json" (ClaimAttempt: one attempt per prefix, ever), "log",
// "result.json" and "artifacts/...", and while a task runs on a store that
// is not a local directory, its live log in chunks (ChunkIndex). Prune
// deletes old attempts by that layout (AttemptOf).
package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/turtles-ci/turtles"
)

// ErrNotExist is returned (wrapped) by Get and Stat for a missing key.
var ErrNotExist = errors.New("object does not exist")

// ErrExist is returned (wrapped) by PutNew when the key is taken.
var ErrExist = errors.New("object already exists")

// Store is a flat key/value store of files.
type Store interface {
	// Put stores the whole of r under key, replacing what was there. A
	// reader never sees a partial object.
	Put(ctx context.Context, key string, r io.Reader, contentType string) error
	// PutNew stores the whole of r under key only if no object has that
	// key: of concurrent PutNews of one key exactly one succeeds, the
	// others return ErrExist (wrapped) and change nothing. It is how an
	// attempt claims its prefix (ClaimAttempt), so it must be atomic in
	// the store itself, not a Stat followed by a Put.
	PutNew(ctx context.Context, key string, r io.Reader, contentType string) error
	// Get opens key. ErrNotExist if it is missing.
	Get(ctx context.Context, key string) (io.ReadCloser, Info, error)
	// Stat describes key. ErrNotExist if it is missing.
	Stat(ctx context.Context, key string) (Info, error)
	// List returns the objects whose keys start with prefix, sorted by key.
	List(ctx context.Context, prefix string) ([]Info, error)
	// Delete removes key; deleting a missing key is not an error.
	Delete(ctx context.Context, key string) error
}

// Creator is implemented by stores whose objects are local files (Dir). A
// live log is then written into its object directly, once, rather than to
// a local copy and again to the store.
type Creator interface {
	// Create makes key an empty object of contentType, replacing what was
	// there, and returns its file open for writing. Readers see what is
	// written at once: unlike Put, a reader may see any prefix of the
	// object while it is written. The caller closes the file.
	Create(ctx context.Context, key, contentType string) (*os.File, error)
}

// MinPartSize is the smallest part of a composed object but the last: S3's
// minimum part size of a multipart upload.
const MinPartSize = 5 << 20

// Part is a piece of a composed object: a byte range of an object already
// in the store (Key), which the store copies itself, or Data to upload.
type Part struct {
	Key    string // source object; "" means Data
	Offset int64  // start of the range in Key
	Size   int64  // bytes in the range, or in Data
	Data   io.Reader
}

// Composer is implemented by stores that can build an object from ranges
// of other objects without the bytes passing through the client (S3's
// multipart upload with UploadPartCopy): a live log uploaded in chunks
// becomes one object without being uploaded again.
type Composer interface {
	// Compose stores the concatenation of parts under key, replacing what
	// was there; readers never see a partial object. Every part but the
	// last must be at least MinPartSize, and there must be at most 10,000.
	// On error (including a server that cannot copy parts) the old object
	// is left as it was, and the caller may Put the object instead.
	Compose(ctx context.Context, key string, parts []Part, contentType string) error
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
	// HeldName is the VM of a failed attempt, held for `turtles debug`
	// (a context's hold:): memory and disk, compressed (vm.Hold).
	HeldName = "held-vm.tar.gz"
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
