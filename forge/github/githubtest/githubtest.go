// Package githubtest is a fake GitHub REST API for tests anywhere in
// turtles. It serves the commit status endpoint, and the read-only ones
// the gate and the scanner use (pull requests, combined statuses, contents,
// branches, org members, permissions; with ETags), on a loopback httptest
// server, records every request, and fails on demand, so that code that
// sets statuses can be tested through real HTTP without the network.
// EnableApp makes it issue GitHub App installation tokens too; OAuth is
// the authorization server of the dashboard's login.
//
// Only tests may import it.
package githubtest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/turtles-ci/turtles/forge/forgetest"
)

// MaxDescription is the longest description GitHub accepts, in characters.
const MaxDescription = 140

// Status is one commit status the server accepted.
type Status struct {
	Repo        string // "owner/name"
	SHA         string
	Context     string
	State       string
	TargetURL   string
	Description string
}

// Request is one request the server received, whatever its answer. Its
// Header holds the headers worth asserting on: Authorization,
// User-Agent, Accept, Content-Type, X-GitHub-Api-Version, If-None-Match.
type Request = forgetest.Request

// Fault is an answer injected in place of the next requests of a kind.
type Fault = forgetest.Fault

// RateLimited is GitHub's answer when the primary rate limit is used up:
// 403 with X-RateLimit-Remaining: 0 and the reset time.
func RateLimited(reset time.Time) Fault {
	return Fault{
		Code: http.StatusForbidden,
		Header: http.Header{
			"X-Ratelimit-Limit":     {"5000"},
			"X-Ratelimit-Remaining": {"0"},
			"X-Ratelimit-Reset":     {strconv.FormatInt(reset.Unix(), 10)},
		},
		Message:          "API rate limit exceeded",
		DocumentationURL: "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api",
	}
}

// SecondaryRateLimited is GitHub's answer for too many requests in a short
// time: 429 with Retry-After in whole seconds.
func SecondaryRateLimited(retryAfter time.Duration) Fault {
	return Fault{
		Code:             http.StatusTooManyRequests,
		Header:           http.Header{"Retry-After": {strconv.Itoa(int(retryAfter / time.Second))}},
		Message:          "You have exceeded a secondary rate limit.",
		DocumentationURL: "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits",
	}
}

// Server is a fake GitHub API. Its methods are safe for concurrent use.
type Server struct {
	// URL is the API base URL, e.g. http://127.0.0.1:1234, for
	// github.Config.BaseURL.
	URL string

	token string
	srv   *httptest.Server

	requests *forgetest.Recorder
	faults   forgetest.Faults // of status requests
	statuses *forgetest.Statuses[Status]

	mu      sync.Mutex
	lookups lookups
	app     *app
	nextID  int64 // of installation tokens
	oauth   *forgetest.OAuth
	private map[string]bool // repositories only those with a permission see
}

// NewServer starts a fake API that accepts token, closed when the test
// ends. An empty token turns the authorization check off.
func NewServer(t testing.TB, token string) *Server {
	t.Helper()
	s := &Server{token: token,
		statuses: forgetest.NewStatuses(func(st Status) forgetest.StatusKey {
			return forgetest.StatusKey{Repo: st.Repo, SHA: st.SHA, Context: st.Context}
		}),
		requests: forgetest.NewRecorder("Authorization", "User-Agent", "Accept", "Content-Type", "X-GitHub-Api-Version", "If-None-Match")}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /repos/{owner}/{repo}/statuses/{sha}", s.createStatus)
	s.routeLookups(mux)
	s.routeOAuth(mux)
	mux.HandleFunc("POST /app/installations/{id}/access_tokens", s.accessToken)
	mux.HandleFunc("GET /repos/{owner}/{repo}/installation", s.installationOf)
	mux.HandleFunc("GET /orgs/{owner}/installation", s.installationOf)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.answer(w, r, http.StatusNotFound, nil, map[string]string{
			"message":           "Not Found",
			"documentation_url": "https://docs.github.com/rest",
		})
	})
	s.srv = httptest.NewServer(mux)
	s.URL = s.srv.URL
	t.Cleanup(s.srv.Close)
	return s
}

// Close stops the server early, e.g. to provoke network errors.
func (s *Server) Close() { s.srv.Close() }

// FailNext makes the next n status requests fail with HTTP status code.
func (s *Server) FailNext(n, code int) { s.FailNextWith(n, Fault{Code: code}) }

// FailNextWith makes the next n status requests answer with f. Faults
// queue up behind those already injected.
func (s *Server) FailNextWith(n int, f Fault) { s.faults.Add(n, f) }

// Statuses returns the accepted statuses in arrival order.
func (s *Server) Statuses() []Status { return s.statuses.All() }

// Requests returns every request received, in arrival order.
func (s *Server) Requests() []Request { return s.requests.Requests() }

// Final returns the last accepted status of context on repo@sha: what
// GitHub would show.
func (s *Server) Final(repo, sha, context string) (Status, bool) {
	return s.statuses.Latest(forgetest.StatusKey{Repo: repo, SHA: sha, Context: context})
}

// WaitStatuses waits until at least n statuses arrived and returns them
// all; the test fails if they do not arrive within timeout.
func (s *Server) WaitStatuses(t testing.TB, n int, timeout time.Duration) []Status {
	t.Helper()
	return s.statuses.Wait(t, n, timeout)
}

// answer records r and writes code with body as JSON.
func (s *Server) answer(w http.ResponseWriter, r *http.Request, code int, header http.Header, body any) {
	s.requests.Record(r, code)
	write(w, code, header, body)
}

func write(w http.ResponseWriter, code int, header http.Header, body any) {
	forgetest.WriteJSON(w, code, header, "application/json; charset=utf-8", body)
}

// fail answers r with an injected fault.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, f Fault) {
	s.answer(w, r, f.Code, f.Header, errorBody(f.Text(), f.DocumentationURL))
}

func errorBody(message, doc string) map[string]string {
	m := map[string]string{"message": message}
	if doc != "" {
		m["documentation_url"] = doc
	}
	return m
}

func (s *Server) authorized(r *http.Request) bool {
	if s.token == "" {
		return true
	}
	a := r.Header.Get("Authorization")
	return a == "Bearer "+s.token || a == "token "+s.token || s.appToken(a, r)
}

// createStatus mimics POST /repos/{owner}/{repo}/statuses/{sha}.
func (s *Server) createStatus(w http.ResponseWriter, r *http.Request) {
	if f, ok := s.faults.Take(); ok {
		s.fail(w, r, f)
		return
	}
	if !s.authorized(r) {
		s.answer(w, r, http.StatusUnauthorized, nil, errorBody("Bad credentials", "https://docs.github.com/rest"))
		return
	}
	var in struct {
		State       string  `json:"state"`
		TargetURL   *string `json:"target_url"`
		Description *string `json:"description"`
		Context     *string `json:"context"`
	}
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
		s.answer(w, r, http.StatusBadRequest, nil, errorBody("Problems parsing JSON", ""))
		return
	}
	st := Status{
		Repo:    r.PathValue("owner") + "/" + r.PathValue("repo"),
		SHA:     r.PathValue("sha"),
		State:   in.State,
		Context: "default", // GitHub's default when none is given
	}
	if in.Context != nil {
		st.Context = *in.Context
	}
	if in.TargetURL != nil {
		st.TargetURL = *in.TargetURL
	}
	if in.Description != nil {
		st.Description = *in.Description
	}
	switch {
	case st.State != "pending" && st.State != "success" && st.State != "failure" && st.State != "error":
		s.answer(w, r, http.StatusUnprocessableEntity, nil, validationFailed("state", fmt.Sprintf("state %q is not included in the list", st.State)))
		return
	case utf8.RuneCountInString(st.Description) > MaxDescription:
		s.answer(w, r, http.StatusUnprocessableEntity, nil, validationFailed("description", "description is too long (maximum is 140 characters)"))
		return
	}

	// The request is recorded before the status, so that a test woken by
	// WaitStatuses also sees the request.
	s.requests.Record(r, http.StatusCreated)
	id, _ := s.statuses.Add(st, nil)

	now := time.Now().UTC().Format(time.RFC3339)
	write(w, http.StatusCreated, nil, map[string]any{
		"id":          id,
		"node_id":     fmt.Sprintf("SC_fake%d", id),
		"url":         fmt.Sprintf("%s/repos/%s/statuses/%s", s.URL, st.Repo, st.SHA),
		"state":       st.State,
		"description": st.Description,
		"target_url":  st.TargetURL,
		"context":     st.Context,
		"created_at":  now,
		"updated_at":  now,
		"creator":     map[string]any{"login": "turtles-bot", "id": 1, "type": "Bot"},
	})
}

func validationFailed(field, message string) map[string]any {
	return map[string]any{
		"message":           "Validation Failed",
		"errors":            []map[string]string{{"resource": "Status", "field": field, "code": "custom", "message": message}},
		"documentation_url": "https://docs.github.com/rest/commits/statuses#create-a-commit-status",
	}
}
