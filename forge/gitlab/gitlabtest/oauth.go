package gitlabtest

import (
	"net/http"
	"strings"

	"github.com/turtles-ci/turtles/forge/forgetest"
)

// The OAuth side of the fake, for the dashboard's login: GitLab's
// /oauth/authorize and /oauth/token, and what a signed-in person's token
// reads (/api/v4/user, /api/v4/projects/:id). Projects are public unless
// SetPrivate; a private one is shown to its members and to members of
// the groups above it.

func (s *Server) routeOAuth(mux *http.ServeMux) {
	s.oauth = forgetest.NewOAuth()
	s.private = map[string]bool{}
	mux.HandleFunc("GET /oauth/authorize", func(w http.ResponseWriter, r *http.Request) {
		s.requests.Record(r, http.StatusFound)
		s.oauth.Authorize(w, r)
	})
	mux.HandleFunc("POST /oauth/token", func(w http.ResponseWriter, r *http.Request) {
		s.requests.Record(r, http.StatusOK)
		s.oauth.Token(w, r)
	})
	mux.HandleFunc("GET /api/v4/user", s.currentUser)
	mux.HandleFunc("GET /api/v4/projects/{id}", s.getProject)
}

// OAuth is the fake's authorization server: register the dashboard as a
// client, sign a person in.
func (s *Server) OAuth() *forgetest.OAuth { return s.oauth }

// SetPrivate makes project private: only its members, and members of
// the groups above it, see it.
func (s *Server) SetPrivate(project string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.private[project] = true
}

func (s *Server) currentUser(w http.ResponseWriter, r *http.Request) {
	login, ok := s.oauth.Who(r)
	if !ok {
		s.answer(w, r, http.StatusUnauthorized, nil, map[string]string{"message": "401 Unauthorized"})
		return
	}
	s.mu.Lock()
	s.user(login)
	id := s.users[login]
	s.mu.Unlock()
	s.answer(w, r, http.StatusOK, nil, map[string]any{"id": id, "username": login, "state": "active"})
}

// member reports whether login has any access to project, directly or
// through a group above it. s.mu is held.
func (s *Server) memberLocked(project, login string) bool {
	if _, ok := s.projectAcc[project+":"+login]; ok {
		return true
	}
	for g := project; strings.Contains(g, "/"); {
		g = g[:strings.LastIndex(g, "/")]
		if _, ok := s.groupAcc[g+":"+login]; ok {
			return true
		}
	}
	return false
}

// getProject mimics GET /projects/:id for a person's token (or turtles'):
// a private project is a 404 to anyone who is not a member.
func (s *Server) getProject(w http.ResponseWriter, r *http.Request) {
	project := r.PathValue("id")
	login, person := s.oauth.Who(r)
	if !person && !s.authorized(r) {
		s.answer(w, r, http.StatusUnauthorized, nil, map[string]string{"message": "401 Unauthorized"})
		return
	}
	s.mu.Lock()
	private := s.private[project]
	visible := !private || !person || s.memberLocked(project, login)
	s.mu.Unlock()
	if !visible {
		s.answer(w, r, http.StatusNotFound, nil, map[string]string{"message": "404 Project Not Found"})
		return
	}
	vis := "public"
	if private {
		vis = "private"
	}
	s.answer(w, r, http.StatusOK, nil, map[string]any{"id": 1, "path_with_namespace": project, "visibility": vis})
}
