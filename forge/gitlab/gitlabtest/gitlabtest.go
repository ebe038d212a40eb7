// Package gitlabtest is a fake GitLab REST API (v4) for tests anywhere in
// turtles. It serves the commit status endpoints and the read-only ones
// the gate and the scanner use (merge requests, branches, raw files, users,
// project and group members), and an OAuth authorization server for the
// dashboard's login, on a loopback httptest server, records every
// request, and fails on demand. Like GitLab, it refuses to set a status to
// the state it already has while that state is not final.
//
// Only tests may import it.
package gitlabtest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/turtles-ci/turtles/forge/forgetest"
)

// Status is one commit status the server accepted.
type Status struct {
	Project     string // full path, "group/name"
	SHA         string
	Name        string
	State       string // GitLab's: pending, running, success, failed, canceled
	TargetURL   string
	Description string
}

// Request is one request the server received, whatever its answer. Its
// Header holds PRIVATE-TOKEN, Authorization, User-Agent, Content-Type.
type Request = forgetest.Request

// Fault is an answer injected in place of the next requests of a kind
// (its DocumentationURL is GitHub's and goes unused here).
type Fault = forgetest.Fault

// RateLimited is GitLab's 429 with Retry-After and RateLimit-Reset.
func RateLimited(retryAfter time.Duration) Fault {
	return Fault{Code: http.StatusTooManyRequests, Message: "Retry later", Header: http.Header{
		"Retry-After":     {strconv.Itoa(int(retryAfter / time.Second))},
		"Ratelimit-Reset": {strconv.FormatInt(time.Now().Add(retryAfter).Unix(), 10)},
	}}
}

// MergeRequest is an opened merge request the server lists.
type MergeRequest struct {
	IID          int
	HeadSHA      string
	TargetBranch string
	// BaseSHA is diff_refs.base_sha of the single merge request.
	BaseSHA string
	Author  string
}

// Server is a fake GitLab API. Its methods are safe for concurrent use.
type Server struct {
	// URL is the instance root, e.g. http://127.0.0.1:1234, for
	// gitlab.Config.BaseURL.
	URL string

	token string
	srv   *httptest.Server

	requests   *forgetest.Recorder
	postFaults forgetest.Faults
	getFaults  forgetest.Faults
	statuses   *forgetest.Statuses[Status]

	mu         sync.Mutex
	mrs        map[string][]MergeRequest // by project
	files      map[string][]byte         // by project@sha:path
	branches   map[string]string         // by project:branch
	users      map[string]int64          // by username
	projectAcc map[string]int            // by project:username
	groupAcc   map[string]int            // by group:username
	oauth      *forgetest.OAuth
	private    map[string]bool // projects only members see
}

// NewServer starts a fake API that accepts token (as PRIVATE-TOKEN or a
// Bearer token), closed when the test ends. An empty token turns the
// check off.
func NewServer(t testing.TB, token string) *Server {
	t.Helper()
	s := &Server{token: token,
		statuses: forgetest.NewStatuses(func(st Status) forgetest.StatusKey {
			return forgetest.StatusKey{Repo: st.Project, SHA: st.SHA, Context: st.Name}
		}),
		requests: forgetest.NewRecorder("Private-Token", "Authorization", "User-Agent", "Content-Type"),
		mrs:      map[string][]MergeRequest{}, files: map[string][]byte{}, branches: map[string]string{},
		users: map[string]int64{}, projectAcc: map[string]int{}, groupAcc: map[string]int{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/v4/projects/{id}/statuses/{sha}", s.createStatus)
	mux.HandleFunc("GET /api/v4/projects/{id}/repository/commits/{sha}/statuses", s.listStatuses)
	mux.HandleFunc("GET /api/v4/projects/{id}/merge_requests", s.listMRs)
	mux.HandleFunc("GET /api/v4/projects/{id}/merge_requests/{iid}", s.getMR)
	mux.HandleFunc("GET /api/v4/projects/{id}/repository/branches/{branch}", s.getBranch)
	mux.HandleFunc("GET /api/v4/projects/{id}/repository/files/{path}/raw", s.getRaw)
	mux.HandleFunc("GET /api/v4/users", s.listUsers)
	mux.HandleFunc("GET /api/v4/projects/{id}/members/all/{uid}", s.projectMember)
	mux.HandleFunc("GET /api/v4/groups/{id}/members/all/{uid}", s.groupMember)
	s.routeOAuth(mux)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.answer(w, r, http.StatusNotFound, nil, map[string]string{"error": "404 Not Found"})
	})
	s.srv = httptest.NewServer(mux)
	s.URL = s.srv.URL
	t.Cleanup(s.srv.Close)
	return s
}

// Close stops the server early, e.g. to provoke network errors.
func (s *Server) Close() { s.srv.Close() }

// FailNextWith makes the next n status POSTs answer with f.
func (s *Server) FailNextWith(n int, f Fault) { s.postFaults.Add(n, f) }

// FailNextGetWith makes the next n GET requests answer with f.
func (s *Server) FailNextGetWith(n int, f Fault) { s.getFaults.Add(n, f) }

// Statuses returns the accepted statuses in arrival order.
func (s *Server) Statuses() []Status { return s.statuses.All() }

// Requests returns every request received, in arrival order.
func (s *Server) Requests() []Request { return s.requests.Requests() }

// Final returns the last accepted status named name on project@sha.
func (s *Server) Final(project, sha, name string) (Status, bool) {
	return s.statuses.Latest(forgetest.StatusKey{Repo: project, SHA: sha, Context: name})
}

// WaitStatuses waits until at least n statuses arrived and returns them
// all; the test fails if they do not arrive within timeout.
func (s *Server) WaitStatuses(t testing.TB, n int, timeout time.Duration) []Status {
	t.Helper()
	return s.statuses.Wait(t, n, timeout)
}

// SetMergeRequests replaces the opened merge requests of project.
func (s *Server) SetMergeRequests(project string, mrs ...MergeRequest) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mrs[project] = append([]MergeRequest(nil), mrs...)
}

// SetFile puts a file at project@sha.
func (s *Server) SetFile(project, sha, path string, data []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.files[project+"@"+sha+":"+path] = data
}

// SetBranch points branch of project at sha.
func (s *Server) SetBranch(project, branch, sha string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.branches[project+":"+branch] = sha
}

// Access levels, as GitLab numbers them.
const (
	Guest      = 10
	Reporter   = 20
	Developer  = 30
	Maintainer = 40
	Owner      = 50
)

func (s *Server) user(name string) {
	if _, ok := s.users[name]; !ok {
		s.users[name] = int64(100 + len(s.users))
	}
}

// AddUser makes a user known (every user named below is added too).
func (s *Server) AddUser(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.user(name)
}

// SetProjectAccess makes user a member of project with access level.
func (s *Server) SetProjectAccess(project, user string, level int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.user(user)
	s.projectAcc[project+":"+user] = level
}

// SetGroupAccess makes user a member of group with access level.
func (s *Server) SetGroupAccess(group, user string, level int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.user(user)
	s.groupAcc[group+":"+user] = level
}

func (s *Server) answer(w http.ResponseWriter, r *http.Request, code int, header http.Header, body any) {
	s.requests.Record(r, code)
	write(w, code, header, body)
}

func write(w http.ResponseWriter, code int, header http.Header, body any) {
	forgetest.WriteJSON(w, code, header, "application/json", body)
}

func (s *Server) authorized(r *http.Request) bool {
	return s.token == "" || r.Header.Get("PRIVATE-TOKEN") == s.token || r.Header.Get("Authorization") == "Bearer "+s.token
}

func (s *Server) fail(w http.ResponseWriter, r *http.Request, f Fault) {
	s.answer(w, r, f.Code, f.Header, map[string]string{"message": f.Text()})
}

var states = map[string]bool{"pending": true, "running": true, "success": true, "failed": true, "canceled": true, "skipped": true}

// createStatus mimics POST /projects/:id/statuses/:sha.
func (s *Server) createStatus(w http.ResponseWriter, r *http.Request) {
	if f, ok := s.postFaults.Take(); ok {
		s.fail(w, r, f)
		return
	}
	if !s.authorized(r) {
		s.answer(w, r, http.StatusUnauthorized, nil, map[string]string{"message": "401 Unauthorized"})
		return
	}
	var in struct {
		State       string `json:"state"`
		Name        string `json:"name"`
		Context     string `json:"context"`
		TargetURL   string `json:"target_url"`
		Description string `json:"description"`
	}
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
		s.answer(w, r, http.StatusBadRequest, nil, map[string]string{"error": "bad JSON"})
		return
	}
	st := Status{Project: r.PathValue("id"), SHA: r.PathValue("sha"), Name: in.Name, State: in.State,
		TargetURL: in.TargetURL, Description: in.Description}
	if st.Name == "" {
		st.Name = in.Context
	}
	if st.Name == "" {
		st.Name = "default"
	}
	if !states[st.State] {
		s.answer(w, r, http.StatusBadRequest, nil, map[string]string{"error": "state does not have a valid value"})
		return
	}
	// GitLab refuses pending after pending and running after running. An
	// accepted request is recorded before its status is added, so that a
	// test woken by WaitStatuses also sees it.
	id, added := s.statuses.Add(st, func(old Status, ok bool) bool {
		if ok && old.State == st.State && (old.State == "pending" || old.State == "running") {
			return true
		}
		s.requests.Record(r, http.StatusCreated)
		return false
	})
	if !added {
		verb := map[string]string{"pending": "enqueue", "running": "run"}[st.State]
		s.answer(w, r, http.StatusBadRequest, nil, map[string]string{"message": fmt.Sprintf(
			"Cannot transition status via :%s from :%s (Reason(s): Status cannot transition via \"%s\".)", verb, st.State, verb)})
		return
	}
	write(w, http.StatusCreated, nil, statusJSON(id, st))
}

func statusJSON(id int64, st Status) map[string]any {
	return map[string]any{"id": id, "sha": st.SHA, "ref": nil, "status": st.State, "name": st.Name,
		"target_url": st.TargetURL, "description": st.Description, "allow_failure": false,
		"created_at": time.Now().UTC().Format(time.RFC3339), "author": map[string]any{"id": 1, "username": "turtles-bot"}}
}

// get answers a GET with body, or an injected fault, or 404 when !found.
func (s *Server) get(w http.ResponseWriter, r *http.Request, found bool, body any) {
	f, faulty := s.getFaults.Take()
	switch {
	case faulty:
		s.fail(w, r, f)
	case !s.authorized(r):
		s.answer(w, r, http.StatusUnauthorized, nil, map[string]string{"message": "401 Unauthorized"})
	case !found:
		s.answer(w, r, http.StatusNotFound, nil, map[string]string{"message": "404 Not found"})
	default:
		// One page always: no X-Next-Page.
		s.answer(w, r, http.StatusOK, http.Header{"X-Page": {"1"}, "X-Total-Pages": {"1"}}, body)
	}
}

func (s *Server) listStatuses(w http.ResponseWriter, r *http.Request) {
	project, sha := r.PathValue("id"), r.PathValue("sha")
	out := []map[string]any{}
	for _, n := range s.statuses.Current(project, sha) {
		out = append(out, statusJSON(n.ID, n.Status))
	}
	s.get(w, r, true, out)
}

func (s *Server) mrJSON(project string, m MergeRequest) map[string]any {
	return map[string]any{"id": 1000 + m.IID, "iid": m.IID, "state": "opened", "sha": m.HeadSHA,
		"target_branch": m.TargetBranch, "source_branch": fmt.Sprintf("mr-%d", m.IID),
		"author":     map[string]any{"id": s.users[m.Author], "username": m.Author},
		"references": map[string]any{"full": fmt.Sprintf("%s!%d", project, m.IID)},
		"diff_refs":  map[string]any{"base_sha": m.BaseSHA, "head_sha": m.HeadSHA, "start_sha": m.BaseSHA}}
}

func (s *Server) listMRs(w http.ResponseWriter, r *http.Request) {
	project := r.PathValue("id")
	s.mu.Lock()
	out := []map[string]any{}
	if st := r.URL.Query().Get("state"); st == "" || st == "opened" || st == "all" {
		for _, m := range s.mrs[project] {
			out = append(out, s.mrJSON(project, m))
		}
	}
	s.mu.Unlock()
	s.get(w, r, true, out)
}

func (s *Server) getMR(w http.ResponseWriter, r *http.Request) {
	project := r.PathValue("id")
	iid, _ := strconv.Atoi(r.PathValue("iid"))
	s.mu.Lock()
	var body map[string]any
	for _, m := range s.mrs[project] {
		if m.IID == iid {
			body = s.mrJSON(project, m)
		}
	}
	s.mu.Unlock()
	s.get(w, r, body != nil, body)
}

func (s *Server) getBranch(w http.ResponseWriter, r *http.Request) {
	project, b := r.PathValue("id"), r.PathValue("branch")
	s.mu.Lock()
	sha, ok := s.branches[project+":"+b]
	s.mu.Unlock()
	s.get(w, r, ok, map[string]any{"name": b, "commit": map[string]any{"id": sha}})
}

func (s *Server) getRaw(w http.ResponseWriter, r *http.Request) {
	project, p, ref := r.PathValue("id"), r.PathValue("path"), r.URL.Query().Get("ref")
	s.mu.Lock()
	data, ok := s.files[project+"@"+ref+":"+p]
	s.mu.Unlock()
	f, faulty := s.getFaults.Take()
	switch {
	case faulty:
		s.fail(w, r, f)
	case !s.authorized(r):
		s.answer(w, r, http.StatusUnauthorized, nil, map[string]string{"message": "401 Unauthorized"})
	case !ok:
		s.answer(w, r, http.StatusNotFound, nil, map[string]string{"message": "404 File Not Found"})
	default:
		s.requests.Record(r, http.StatusOK)
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write(data)
	}
}

func (s *Server) listUsers(w http.ResponseWriter, r *http.Request) {
	name := r.URL.Query().Get("username")
	s.mu.Lock()
	out := []map[string]any{}
	if id, ok := s.users[name]; ok {
		out = append(out, map[string]any{"id": id, "username": name, "state": "active"})
	}
	s.mu.Unlock()
	s.get(w, r, true, out)
}

func (s *Server) member(w http.ResponseWriter, r *http.Request, acc map[string]int) {
	uid, _ := strconv.ParseInt(r.PathValue("uid"), 10, 64)
	s.mu.Lock()
	name := ""
	for n, id := range s.users {
		if id == uid {
			name = n
		}
	}
	level, ok := acc[r.PathValue("id")+":"+name]
	s.mu.Unlock()
	s.get(w, r, ok, map[string]any{"id": uid, "username": name, "access_level": level, "state": "active"})
}

func (s *Server) projectMember(w http.ResponseWriter, r *http.Request) { s.member(w, r, s.projectAcc) }
func (s *Server) groupMember(w http.ResponseWriter, r *http.Request)   { s.member(w, r, s.groupAcc) }
