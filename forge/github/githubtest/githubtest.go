// Package githubtest is a fake GitHub REST API for tests anywhere in
// turtles. It serves the commit status endpoint, and the read-only ones
// the gate and the scanner use (pull requests, combined statuses, contents,
// branches, org members, permissions; with ETags), on a loopback httptest
// server, records every request, and fails on demand, so that code that
// sets statuses can be tested through real HTTP without the network.
// EnableApp makes it issue GitHub App installation tokens too.
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

// Request is one request the server received, whatever its answer.
type Request struct {
	Method string
	Path   string
	// Header holds the headers worth asserting on: Authorization,
	// User-Agent, Accept, Content-Type, X-GitHub-Api-Version.
	Header http.Header
	// Code is the HTTP status the server answered with.
	Code int
}

// Fault is an answer injected in place of the next status requests.
type Fault struct {
	Code int
	// Header is added to the answer, e.g. rate-limit headers.
	Header http.Header
	// Message is the JSON error message; default the status text.
	Message string
	// DocumentationURL is the JSON documentation_url field.
	DocumentationURL string
}

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

	mu       sync.Mutex
	statuses []Status
	requests []Request
	faults   []Fault
	lookups  lookups
	app      *app
	nextID   int64
	// changed is closed and replaced whenever a status arrives, so that
	// WaitStatuses wakes up without polling on a timer.
	changed chan struct{}
}

// NewServer starts a fake API that accepts token, closed when the test
// ends. An empty token turns the authorization check off.
func NewServer(t testing.TB, token string) *Server {
	t.Helper()
	s := &Server{token: token, changed: make(chan struct{})}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /repos/{owner}/{repo}/statuses/{sha}", s.createStatus)
	s.routeLookups(mux)
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
func (s *Server) FailNextWith(n int, f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range n {
		s.faults = append(s.faults, f)
	}
}

// Statuses returns the accepted statuses in arrival order.
func (s *Server) Statuses() []Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Status(nil), s.statuses...)
}

// Requests returns every request received, in arrival order.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Request, len(s.requests))
	for i, r := range s.requests {
		r.Header = r.Header.Clone()
		out[i] = r
	}
	return out
}

// Final returns the last accepted status of context on repo@sha: what
// GitHub would show.
func (s *Server) Final(repo, sha, context string) (Status, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := len(s.statuses) - 1; i >= 0; i-- {
		st := s.statuses[i]
		if st.Repo == repo && st.SHA == sha && st.Context == context {
			return st, true
		}
	}
	return Status{}, false
}

// WaitStatuses waits until at least n statuses arrived and returns them
// all; the test fails if they do not arrive within timeout.
func (s *Server) WaitStatuses(t testing.TB, n int, timeout time.Duration) []Status {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		s.mu.Lock()
		got, changed := len(s.statuses), s.changed
		s.mu.Unlock()
		if got >= n {
			return s.Statuses()
		}
		select {
		case <-changed:
		case <-deadline.C:
			t.Fatalf("githubtest: got %d statuses within %s, want %d: %+v", got, timeout, n, s.Statuses())
			return nil
		}
	}
}

var headerSubset = []string{"Authorization", "User-Agent", "Accept", "Content-Type", "X-GitHub-Api-Version", "If-None-Match"}

// record makes the Request for r answered with code.
func record(r *http.Request, code int) Request {
	h := http.Header{}
	for _, k := range headerSubset {
		if v := r.Header.Values(k); len(v) > 0 {
			h[k] = append([]string(nil), v...)
		}
	}
	return Request{Method: r.Method, Path: r.URL.Path, Header: h, Code: code}
}

// answer records r and writes code with body as JSON.
func (s *Server) answer(w http.ResponseWriter, r *http.Request, code int, header http.Header, body any) {
	req := record(r, code)
	s.mu.Lock()
	s.requests = append(s.requests, req)
	s.mu.Unlock()
	write(w, code, header, body)
}

func write(w http.ResponseWriter, code int, header http.Header, body any) {
	for k, v := range header {
		w.Header()[k] = v
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(body) // a client that hung up gets nothing
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
	s.mu.Lock()
	var fault *Fault
	if len(s.faults) > 0 {
		fault = &s.faults[0]
		s.faults = s.faults[1:]
	}
	s.mu.Unlock()
	if fault != nil {
		msg := fault.Message
		if msg == "" {
			msg = http.StatusText(fault.Code)
		}
		s.answer(w, r, fault.Code, fault.Header, errorBody(msg, fault.DocumentationURL))
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

	// The request and the status are recorded together, so that a test
	// woken by WaitStatuses also sees the request.
	req := record(r, http.StatusCreated)
	s.mu.Lock()
	s.nextID++
	id := s.nextID
	s.requests = append(s.requests, req)
	s.statuses = append(s.statuses, st)
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()

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
