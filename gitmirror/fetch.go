package gitmirror

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/turtles-ci/turtles/git"
)

// mirror is the in-memory side of one repository's copy.
type mirror struct {
	// lock is held by the one request that looks at or fetches the
	// copy; the others wait for it (or for their request to end) and
	// then find the copy fresh.
	lock chan struct{}
	// tried is when the copy's refs were last fetched, or a fetch of them
	// failed: either way the forge is not asked again within Interval
	// for a commit the copy has (a forge that is down or hangs would
	// otherwise hold every request for FetchTimeout). Zero after a
	// start, so that the first request fetches.
	tried time.Time
}

// errTooBig is a mirror past Config.MaxSize.
var errTooBig = errors.New("mirror too big")

// sizePoll is how often a running fetch's size is measured.
const sizePoll = 250 * time.Millisecond

// refspecs are what a mirror keeps: branches, tags, GitHub pull request
// heads and GitLab merge request heads (what a task's commit is found
// in), not GitHub's merge refs.
var refspecs = []string{
	"+refs/heads/*:refs/heads/*",
	"+refs/tags/*:refs/tags/*",
	"+refs/pull/*/head:refs/pull/*/head",
	"+refs/merge-requests/*/head:refs/merge-requests/*/head",
}

func (s *Server) repo(name string) *mirror {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, ok := s.repos[name]
	if !ok {
		m = &mirror{lock: make(chan struct{}, 1)}
		s.repos[name] = m
	}
	return m
}

// sync brings name's copy up to date for a fetch of sha: it fetches from
// the forge when the copy does not exist, is older than Interval or lacks
// sha, one fetch per repository at a time. When a fetch fails and the copy
// has sha all the same (the forge is down), the copy is served.
func (s *Server) sync(ctx context.Context, name, sha string) error {
	m := s.repo(name)
	select {
	case m.lock <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("wait for another fetch of %s: %w", name, ctx.Err())
	}
	defer func() { <-m.lock }()
	dir := s.path(name)
	_, err := os.Stat(filepath.Join(dir, "HEAD"))
	exists := err == nil
	fresh := !m.tried.IsZero() && s.cfg.Now().Sub(m.tried) < s.cfg.Interval
	if exists && fresh && s.has(ctx, dir, sha) {
		return nil
	}
	if !exists {
		if err := s.create(ctx, dir); err != nil {
			return err
		}
	}
	err = s.fetch(ctx, name, dir, refspecs...)
	m.tried = s.cfg.Now()
	if err == nil {
		if s.has(ctx, dir, sha) {
			return nil
		}
		// Not in any branch or pull request (yet): ask for the commit
		// itself, as servers that allow it (GitHub, GitLab) answer.
		err = s.fetch(ctx, name, dir, sha)
	}
	if errors.Is(err, errTooBig) {
		// Past its bound, the copy is dropped, not served: the disk is
		// not the forge's to fill.
		m.tried = time.Time{}
		if rerr := os.RemoveAll(dir); rerr != nil {
			s.cfg.Log.Error("git mirror could not remove a mirror past its size bound", "repo", name, "err", rerr)
		}
		return err
	}
	if s.has(ctx, dir, sha) {
		if err != nil {
			s.cfg.Log.Warn("git mirror serves its copy: the fetch failed but the copy has the commit", "repo", name, "sha", sha, "err", err)
		}
		return nil
	}
	if err == nil {
		err = fmt.Errorf("the forge's %s has no commit %s", name, sha)
	}
	return err
}

// create makes an empty bare repository at dir.
func (s *Server) create(ctx context.Context, dir string) error {
	if err := os.MkdirAll(filepath.Dir(dir), 0o700); err != nil {
		return fmt.Errorf("create mirror: %w", err)
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dir), ".new-")
	if err != nil {
		return fmt.Errorf("create mirror: %w", err)
	}
	defer os.RemoveAll(tmp)
	if err := git.Run(ctx, tmp, nil, nil, "init", "-q", "--bare", "--template=", "."); err != nil {
		return fmt.Errorf("create mirror: %w", err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		return fmt.Errorf("create mirror: %w", err)
	}
	return nil
}

// has reports whether the copy at dir has commit sha.
func (s *Server) has(ctx context.Context, dir, sha string) bool {
	return git.Run(ctx, dir, nil, nil, "cat-file", "-e", "--end-of-options", sha+"^{commit}") == nil
}

// fetch runs one git fetch of name from the forge into dir, within
// FetchTimeout and MaxSize, with the forge's credentials in git's
// environment. A stopped fetch's temporary files are removed.
func (s *Server) fetch(ctx context.Context, name, dir string, refs ...string) error {
	upstream := s.cfg.Upstream(name)
	if err := git.CheckURL(upstream); err != nil {
		return fmt.Errorf("upstream of %s: %w", name, err)
	}
	size, err := dirSize(dir)
	if err != nil {
		return fmt.Errorf("measure mirror of %s: %w", name, err)
	}
	if size > s.cfg.MaxSize {
		return fmt.Errorf("mirror of %s takes %d bytes, more than %d: %w", name, size, s.cfg.MaxSize, errTooBig)
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.FetchTimeout)
	defer cancel()
	var header []string
	if u, err := url.Parse(upstream); err == nil && (u.Scheme == "https" || u.Scheme == "http") && s.cfg.Auth != nil {
		auth, err := s.cfg.Auth(ctx, name)
		if err != nil {
			return fmt.Errorf("credentials to fetch %s: %w", name, err)
		}
		if auth != "" {
			header = []string{"Authorization: " + auth}
		}
	}
	env, err := git.Remote{URL: upstream, Header: header}.Env()
	if err != nil {
		return fmt.Errorf("credentials to fetch %s: %w", name, err)
	}
	start := s.cfg.Now()
	args := []string{"fetch", "-q", "--no-tags", "--no-write-fetch-head"}
	if strings.HasPrefix(refs[0], "+refs/") {
		// Refs gone from the forge go from the mirror; a fetch of one
		// commit has no destination refs, and prunes nothing.
		args = append(args, "--prune")
	}
	args = append(append(args, "--", upstream), refs...)
	done := make(chan error, 1)
	go func() { done <- git.Run(ctx, dir, env, nil, args...) }()
	tick := time.NewTicker(sizePoll)
	defer tick.Stop()
	var tooBig error
	for {
		select {
		case err := <-done:
			switch {
			case tooBig != nil:
				err = tooBig
			case err != nil && ctx.Err() == context.DeadlineExceeded:
				err = fmt.Errorf("fetch %s: no answer within %s: %w", name, s.cfg.FetchTimeout, err)
			case err != nil:
				err = fmt.Errorf("fetch %s from %s: %w", name, git.Redact(upstream), err)
			}
			if n, serr := dirSize(dir); err == nil && serr == nil && n > s.cfg.MaxSize {
				err = fmt.Errorf("fetch %s: the mirror grew to %d bytes, past %d: %w", name, n, s.cfg.MaxSize, errTooBig)
			}
			if err != nil {
				removeTemporary(dir)
				return err
			}
			s.cfg.Log.Info("git mirror fetched", "repo", name, "refs", len(refs), "took", s.cfg.Now().Sub(start))
			return nil
		case <-tick.C:
			if n, err := dirSize(dir); err == nil && n > s.cfg.MaxSize && tooBig == nil {
				tooBig = fmt.Errorf("fetch %s: the mirror grew past %d bytes: %w", name, s.cfg.MaxSize, errTooBig)
				cancel()
			}
		}
	}
}

// removeTemporary removes what a stopped fetch leaves in a bare
// repository: incoming object directories and temporary packs.
func removeTemporary(dir string) {
	objects := filepath.Join(dir, "objects")
	if ents, err := os.ReadDir(objects); err == nil {
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), "incoming-") || strings.HasPrefix(e.Name(), "tmp_") {
				os.RemoveAll(filepath.Join(objects, e.Name()))
			}
		}
	}
	if ents, err := os.ReadDir(filepath.Join(objects, "pack")); err == nil {
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), "tmp_") {
				os.Remove(filepath.Join(objects, "pack", e.Name()))
			}
		}
	}
}

// dirSize is the size of the files under dir, in bytes.
func dirSize(dir string) (int64, error) {
	var n int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // a temporary file git removed meanwhile
			}
			return err
		}
		if d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n, err
}
