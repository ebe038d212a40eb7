package githubtest

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"path"
	"strconv"

	"github.com/turtles-ci/turtles/forge/forgetest"
)

// PullRequest is an open pull request the server lists.
type PullRequest struct {
	Number  int
	HeadSHA string
	BaseRef string
	BaseSHA string
	Author  string
}

// lookups is the server's read-only state, served by the GET endpoints.
type lookups struct {
	pulls    map[string][]PullRequest // by repo, in creation order
	files    map[string][]byte        // by repo@sha:path
	branches map[string]string        // by repo:branch
	members  map[string]bool          // by org/user
	perms    map[string]string        // by repo:user
	// getFaults are answers injected in place of the next GET requests.
	getFaults forgetest.Faults
}

func (s *Server) routeLookups(mux *http.ServeMux) {
	s.lookups = lookups{pulls: map[string][]PullRequest{}, files: map[string][]byte{}, branches: map[string]string{},
		members: map[string]bool{}, perms: map[string]string{}}
	mux.HandleFunc("GET /repos/{owner}/{repo}/pulls", s.listPulls)
	mux.HandleFunc("GET /repos/{owner}/{repo}/pulls/{number}", s.getPull)
	mux.HandleFunc("GET /repos/{owner}/{repo}/commits/{ref}/status", s.combinedStatus)
	mux.HandleFunc("GET /repos/{owner}/{repo}/contents/{path...}", s.getContents)
	mux.HandleFunc("GET /repos/{owner}/{repo}/branches/{branch}", s.getBranch)
	mux.HandleFunc("GET /orgs/{org}/members/{user}", s.isMember)
	mux.HandleFunc("GET /repos/{owner}/{repo}/collaborators/{user}/permission", s.permission)
}

// SetPulls replaces the open pull requests of repo.
func (s *Server) SetPulls(repo string, prs ...PullRequest) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lookups.pulls[repo] = append([]PullRequest(nil), prs...)
}

// SetFile puts a file at repo@sha.
func (s *Server) SetFile(repo, sha, path string, data []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lookups.files[repo+"@"+sha+":"+path] = data
}

// SetBranch points branch of repo at sha.
func (s *Server) SetBranch(repo, branch, sha string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lookups.branches[repo+":"+branch] = sha
}

// AddMember makes user a member of org.
func (s *Server) AddMember(org, user string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lookups.members[org+"/"+user] = true
}

// SetPermission gives user a permission on repo: admin, write, read;
// "" takes it away.
func (s *Server) SetPermission(repo, user, perm string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if perm == "" {
		delete(s.lookups.perms, repo+":"+user)
		return
	}
	s.lookups.perms[repo+":"+user] = perm
}

// FailNextGetWith makes the next n GET requests answer with f.
func (s *Server) FailNextGetWith(n int, f Fault) { s.lookups.getFaults.Add(n, f) }

// get answers a GET with body, or 304 when the client already has it
// (If-None-Match), or an injected fault. found false answers 404.
func (s *Server) get(w http.ResponseWriter, r *http.Request, found bool, body any) {
	f, faulty := s.lookups.getFaults.Take()
	switch {
	case faulty:
		s.fail(w, r, f)
		return
	case !s.authorized(r):
		s.answer(w, r, http.StatusUnauthorized, nil, errorBody("Bad credentials", "https://docs.github.com/rest"))
		return
	case !found:
		s.answer(w, r, http.StatusNotFound, nil, errorBody("Not Found", "https://docs.github.com/rest"))
		return
	}
	data, _ := json.Marshal(body)
	sum := sha256.Sum256(data)
	etag := `"` + hex.EncodeToString(sum[:16]) + `"`
	h := http.Header{"Etag": {etag}, "X-Ratelimit-Limit": {"5000"}, "X-Ratelimit-Remaining": {"4999"}}
	if r.Header.Get("If-None-Match") == etag {
		s.requests.Record(r, http.StatusNotModified)
		for k, v := range h {
			w.Header()[k] = v
		}
		w.WriteHeader(http.StatusNotModified)
		return
	}
	s.answer(w, r, http.StatusOK, h, body)
}

func repoOf(r *http.Request) string { return r.PathValue("owner") + "/" + r.PathValue("repo") }

func pullJSON(repo string, p PullRequest) map[string]any {
	return map[string]any{
		"number": p.Number, "state": "open",
		"user": map[string]any{"login": p.Author},
		"head": map[string]any{"sha": p.HeadSHA, "ref": fmt.Sprintf("pr-%d", p.Number)},
		"base": map[string]any{"ref": p.BaseRef, "sha": p.BaseSHA, "repo": map[string]any{"full_name": repo}},
	}
}

func (s *Server) listPulls(w http.ResponseWriter, r *http.Request) {
	repo := repoOf(r)
	s.mu.Lock()
	out := []map[string]any{}
	for _, p := range s.lookups.pulls[repo] {
		out = append(out, pullJSON(repo, p))
	}
	s.mu.Unlock()
	s.get(w, r, true, out)
}

func (s *Server) getPull(w http.ResponseWriter, r *http.Request) {
	repo := repoOf(r)
	n, _ := strconv.Atoi(r.PathValue("number"))
	s.mu.Lock()
	var found *PullRequest
	for _, p := range s.lookups.pulls[repo] {
		if p.Number == n {
			found = &p
		}
	}
	s.mu.Unlock()
	if found == nil {
		s.get(w, r, false, nil)
		return
	}
	s.get(w, r, true, pullJSON(repo, *found))
}

func (s *Server) combinedStatus(w http.ResponseWriter, r *http.Request) {
	repo, sha := repoOf(r), r.PathValue("ref")
	out := []map[string]any{}
	for _, n := range s.statuses.Current(repo, sha) {
		st := n.Status
		out = append(out, map[string]any{"context": st.Context, "state": st.State, "description": st.Description, "target_url": st.TargetURL})
	}
	s.get(w, r, true, map[string]any{"state": "pending", "sha": sha, "total_count": len(out), "statuses": out})
}

func (s *Server) getContents(w http.ResponseWriter, r *http.Request) {
	repo, p, ref := repoOf(r), r.PathValue("path"), r.URL.Query().Get("ref")
	s.mu.Lock()
	data, ok := s.lookups.files[repo+"@"+ref+":"+p]
	s.mu.Unlock()
	s.get(w, r, ok, map[string]any{"type": "file", "encoding": "base64", "name": path.Base(p), "path": p,
		"size": len(data), "content": base64.StdEncoding.EncodeToString(data)})
}

func (s *Server) getBranch(w http.ResponseWriter, r *http.Request) {
	repo, b := repoOf(r), r.PathValue("branch")
	s.mu.Lock()
	sha, ok := s.lookups.branches[repo+":"+b]
	s.mu.Unlock()
	s.get(w, r, ok, map[string]any{"name": b, "commit": map[string]any{"sha": sha}})
}

// isMember answers like GitHub: 204 for a member, 404 for anyone else.
func (s *Server) isMember(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	ok := s.lookups.members[r.PathValue("org")+"/"+r.PathValue("user")]
	s.mu.Unlock()
	s.requests.Record(r, map[bool]int{true: http.StatusNoContent, false: http.StatusNotFound}[ok])
	if ok {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	write(w, http.StatusNotFound, nil, errorBody("Not Found", ""))
}

func (s *Server) permission(w http.ResponseWriter, r *http.Request) {
	user := r.PathValue("user")
	s.mu.Lock()
	perm, ok := s.lookups.perms[repoOf(r)+":"+user]
	s.mu.Unlock()
	if !ok {
		perm = "read" // anyone may read a public repository
	}
	s.get(w, r, true, map[string]any{"permission": perm, "user": map[string]any{"login": user}})
}
