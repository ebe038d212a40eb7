package registry

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
)

// journal keeps the manifests go-containerregistry's registry holds in
// memory as files, one per repository and reference (tag or digest), so
// that a restarted registry has them again. A push is acknowledged only
// once its file is written; a delete only once its file is gone. One
// difference remains: a manifest deleted by digest while a tag still
// names it is back under its digest after a restart (the tag's record
// puts it there), as distribution's registry would keep it for the tag.
type journal struct {
	dir  string
	next http.Handler
	log  *slog.Logger
	// mu orders manifest writes so that the files and the registry's
	// memory agree on which of two pushes to one tag came last.
	mu sync.Mutex
}

// record is one manifest file.
type record struct {
	Repo        string `json:"repo"`
	Ref         string `json:"ref"`
	ContentType string `json:"content_type"`
	Manifest    []byte `json:"manifest"`
}

// file names the record of repo and ref by their hash: any name the
// registry accepts maps to one plain file name.
func (j *journal) file(repo, ref string) string {
	sum := sha256.Sum256([]byte(repo + "\x00" + ref))
	return filepath.Join(j.dir, hex.EncodeToString(sum[:])+".json")
}

func (j *journal) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	repo, ref, ok := manifestRef(req.URL.Path)
	if !ok || (req.Method != http.MethodPut && req.Method != http.MethodDelete) {
		j.next.ServeHTTP(w, req)
		return
	}
	if !validRef(repo, ref) {
		http.Error(w, `{"errors":[{"code":"NAME_INVALID","message":"invalid repository name or reference"}]}`, http.StatusBadRequest)
		return
	}
	var body []byte
	if req.Method == http.MethodPut {
		b, err := readLimited(req.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusRequestEntityTooLarge)
			return
		}
		body = b
		req.Body = readCloser{bytes.NewReader(b)}
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	resp := &recorder{header: http.Header{}}
	j.next.ServeHTTP(resp, req)
	if resp.status/100 == 2 {
		var err error
		if req.Method == http.MethodPut {
			// The registry keeps a manifest pushed by tag under its
			// digest too; so does the journal.
			sum := sha256.Sum256(body)
			digest := "sha256:" + hex.EncodeToString(sum[:])
			rec := record{Repo: repo, Ref: ref, ContentType: req.Header.Get("Content-Type"), Manifest: body}
			err = j.write(rec)
			if err == nil && ref != digest {
				rec.Ref = digest
				err = j.write(rec)
			}
		} else {
			err = j.remove(repo, ref)
		}
		if err != nil {
			// The registry's memory is ahead of the disk: say the
			// request failed, so the client retries rather than trusts
			// what a restart would lose.
			j.log.Error("registry: keep manifest", "repo", repo, "ref", ref, "err", err)
			http.Error(w, "registry could not store the manifest", http.StatusInternalServerError)
			return
		}
	}
	resp.copyTo(w)
}

type readCloser struct{ *bytes.Reader }

func (readCloser) Close() error { return nil }

// write stores rec durably: a temporary file, synced, renamed over.
func (j *journal) write(rec record) error {
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	p := j.file(rec.Repo, rec.Ref)
	f, err := os.CreateTemp(j.dir, ".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), p)
}

func (j *journal) remove(repo, ref string) error {
	if err := os.Remove(j.file(repo, ref)); err != nil && !os.IsNotExist(err) {
		return err
	}
	return nil
}

// replay puts every stored manifest back into the registry. An index is
// accepted only once the manifests it lists are there, so records are
// put again until a round accepts none: the order of pushes, whatever it
// was, is found again.
func (j *journal) replay() error {
	left, _ := filepath.Glob(filepath.Join(j.dir, ".tmp-*"))
	for _, p := range left {
		os.Remove(p)
	}
	paths, err := filepath.Glob(filepath.Join(j.dir, "*.json"))
	if err != nil {
		return err
	}
	var pending []record
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return fmt.Errorf("registry: read manifest: %w", err)
		}
		var rec record
		if err := json.Unmarshal(b, &rec); err != nil || !validRef(rec.Repo, rec.Ref) || p != j.file(rec.Repo, rec.Ref) {
			return fmt.Errorf("registry: %s is not a manifest record this registry wrote", p)
		}
		pending = append(pending, rec)
	}
	for len(pending) > 0 {
		var again []record
		var last int
		for _, rec := range pending {
			req, err := http.NewRequest(http.MethodPut, "/", bytes.NewReader(rec.Manifest))
			if err != nil {
				return fmt.Errorf("registry: manifest %s:%s: %w", rec.Repo, rec.Ref, err)
			}
			req.URL.Path = "/v2/" + rec.Repo + "/manifests/" + rec.Ref
			req.Header.Set("Content-Type", rec.ContentType)
			w := &recorder{header: http.Header{}}
			j.next.ServeHTTP(w, req)
			if w.status/100 != 2 {
				again = append(again, rec)
				last = w.status
			}
		}
		if len(again) == len(pending) {
			return fmt.Errorf("registry: %d stored manifests are refused (e.g. %s:%s, status %d): the directory is damaged",
				len(again), again[0].Repo, again[0].Ref, last)
		}
		pending = again
	}
	if len(paths) > 0 {
		j.log.Info("registry: manifests restored", "count", len(paths), "dir", strings.TrimSuffix(j.dir, "/manifests"))
	}
	return nil
}
