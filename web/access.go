package web

import (
	"net/http"
	"strings"

	"github.com/turtles-ci/turtles"
	"github.com/turtles-ci/turtles/state"
)

// Who looks, and what they may see. Without Config.Auth everyone sees
// everything and no one is signed in. With it, every page, API answer
// and stored file of a repository is shown only where Auth.CanRead says
// so; elsewhere the answer is what it would be if the repository had no
// tasks (a 404, or a list without them), so that a private repository's
// existence is not revealed.

// viewer is the person behind one request.
type viewer struct {
	auth Auth
	r    *http.Request
	// User is who is signed in ("" for nobody), CSRF the token their
	// forms carry.
	User, CSRF string
	can        map[string]bool // CanRead, asked once per repository
}

func (s *Server) viewer(r *http.Request) *viewer {
	v := &viewer{auth: s.cfg.Auth, r: r, can: map[string]bool{}}
	if v.auth != nil {
		v.User, v.CSRF = v.auth.Who(r)
	}
	return v
}

// canRead reports whether the viewer may see repo's tasks and logs.
func (v *viewer) canRead(repo string) bool {
	if v.auth == nil {
		return true
	}
	ok, seen := v.can[repo]
	if !seen {
		ok = repo != "" && v.auth.CanRead(v.r, repo)
		v.can[repo] = ok
	}
	return ok
}

// tasks returns those of ts the viewer may see.
func (v *viewer) tasks(ts []state.Task) []state.Task {
	if v.auth == nil {
		return ts
	}
	out := ts[:0:0]
	for _, t := range ts {
		if v.canRead(t.Repo) {
			out = append(out, t)
		}
	}
	return out
}

// repoOfKey returns the repository of a stored file's key: the segments
// before the commit in store.AttemptPrefix (REPO/SHA/CONTEXT/ATTEMPT/...;
// a GitLab repository may have more than two segments). ok is false for
// a key that is no attempt's.
func repoOfKey(key string) (repo string, ok bool) {
	segs := strings.Split(key, "/")
	for i := 2; i+3 < len(segs); i++ {
		if turtles.IsSHA(segs[i]) {
			return strings.Join(segs[:i], "/"), true
		}
	}
	return "", false
}
