package githubtest

import (
	"net/http"

	"github.com/turtles-ci/turtles/forge/forgetest"
)

// The OAuth side of the fake, for the dashboard's login: GitHub's web
// flow at /login/oauth/..., and what a signed-in person's token reads
// (/user, /repos/{owner}/{repo}). Repositories are public unless
// SetPrivate; a private one is shown to those SetPermission names on it.

func (s *Server) routeOAuth(mux *http.ServeMux) {
	s.oauth = forgetest.NewOAuth()
	s.private = map[string]bool{}
	mux.HandleFunc("GET /login/oauth/authorize", func(w http.ResponseWriter, r *http.Request) {
		s.requests.Record(r, http.StatusFound)
		s.oauth.Authorize(w, r)
	})
	mux.HandleFunc("POST /login/oauth/access_token", func(w http.ResponseWriter, r *http.Request) {
		s.requests.Record(r, http.StatusOK)
		s.oauth.Token(w, r)
	})
	mux.HandleFunc("GET /user", s.user)
	mux.HandleFunc("GET /repos/{owner}/{repo}", s.getRepo)
}

// OAuth is the fake's authorization server: register the dashboard as a
// client, sign a person in.
func (s *Server) OAuth() *forgetest.OAuth { return s.oauth }

// SetPrivate makes repo private: only those with a permission on it
// (SetPermission) see it.
func (s *Server) SetPrivate(repo string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.private[repo] = true
}

// user mimics GET /user for a person's token.
func (s *Server) user(w http.ResponseWriter, r *http.Request) {
	login, ok := s.oauth.Who(r)
	if !ok {
		s.answer(w, r, http.StatusUnauthorized, nil, errorBody("Bad credentials", "https://docs.github.com/rest"))
		return
	}
	s.answer(w, r, http.StatusOK, nil, map[string]any{"login": login, "id": len(login), "type": "User"})
}

// getRepo mimics GET /repos/{owner}/{repo}: a private repository is a 404
// to anyone without a permission on it, and to turtles' own token only
// when it has none either (the fake gives that token every repository).
func (s *Server) getRepo(w http.ResponseWriter, r *http.Request) {
	repo := repoOf(r)
	login, person := s.oauth.Who(r)
	if !person && !s.authorized(r) {
		s.answer(w, r, http.StatusUnauthorized, nil, errorBody("Bad credentials", "https://docs.github.com/rest"))
		return
	}
	s.mu.Lock()
	private := s.private[repo]
	perm, granted := s.lookups.perms[repo+":"+login]
	s.mu.Unlock()
	if private && person && !granted {
		s.answer(w, r, http.StatusNotFound, nil, errorBody("Not Found", "https://docs.github.com/rest/repos/repos#get-a-repository"))
		return
	}
	if !granted {
		perm = "read"
	}
	push := perm == "admin" || perm == "maintain" || perm == "write"
	s.answer(w, r, http.StatusOK, nil, map[string]any{"full_name": repo, "private": private,
		"permissions": map[string]bool{"admin": perm == "admin", "maintain": perm == "maintain" || perm == "admin", "push": push, "pull": true}})
}
