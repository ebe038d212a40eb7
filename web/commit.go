package web

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/turtles-ci/turtles"
	"github.com/turtles-ci/turtles/state"
)

// The page of a commit (/commits/REPO/SHA, JSON at /api/v1/commits/REPO/SHA;
// REPO may have any number of segments, SHA is the last one and may be a
// prefix): every context with its state, verdict, duration and attempts,
// what people did to each, the buttons to act when someone is signed in,
// and the earlier pushes of its pull request.

// commitLimit bounds the tasks read for one commit, and for one pull
// request's pushes.
const commitLimit = 1000

type commitView struct {
	chrome `json:"-"`
	Repo   string `json:"repo"`
	SHA    string `json:"sha"`
	Ref    string `json:"ref,omitempty"`
	PR     int    `json:"pr,omitempty"`
	// Tasks are the commit's contexts, by name.
	Tasks []commitTask `json:"tasks"`
	// Summary counts the contexts by outcome, in words.
	Summary string `json:"summary"`
	// Pushes are the pull request's other commits, newest first.
	Pushes []push `json:"pushes,omitempty"`
	// Candidates are the commits a SHA prefix matched, when several did.
	Candidates []string `json:"candidates,omitempty"`
	// PlanID is the task ID the approve form names: the commit's plan
	// task (turtles.PlanContext), whether or not it ran.
	PlanID string `json:"-"`
}

type commitTask struct {
	state.Task
	Actions []state.Action `json:"actions,omitempty"`
}

// push is one commit of a pull request, summarised.
type push struct {
	SHA      string    `json:"sha"`
	Created  time.Time `json:"created"`
	Updated  time.Time `json:"updated"`
	Contexts int       `json:"contexts"`
	Summary  string    `json:"summary"`
}

// commitPath splits /commits/{path...} into the repository and the SHA.
func commitPath(p string) (repo, sha string, err error) {
	i := strings.LastIndex(p, "/")
	if i <= 0 {
		return "", "", bad("a commit's address is /commits/OWNER/NAME/SHA")
	}
	sha, err = parseSHA(p[i+1:])
	return p[:i], sha, err
}

func (s *Server) commitPage(w http.ResponseWriter, r *http.Request) {
	who := s.viewer(r)
	v, err := s.commit(r, who)
	if err != nil {
		s.pageFailed(w, r, who, err)
		return
	}
	code := http.StatusOK
	if len(v.Tasks) == 0 && len(v.Candidates) == 0 {
		code = http.StatusNotFound
	}
	v.chrome = s.chrome(who, v.Repo+" · "+v.SHA[:min(len(v.SHA), 12)], "history", code == http.StatusOK)
	s.render(w, r, code, "commit.html", v)
}

func (s *Server) commitAPI(w http.ResponseWriter, r *http.Request) {
	v, err := s.commit(r, s.viewer(r))
	if err != nil {
		s.apiFailed(w, r, err)
		return
	}
	if len(v.Tasks) == 0 && len(v.Candidates) == 0 {
		writeError(w, http.StatusNotFound, "no task of this commit")
		return
	}
	writeJSON(w, http.StatusOK, v)
}

// commit reads the commit of r. A repository the viewer may not read has
// no tasks, as one that does not exist.
func (s *Server) commit(r *http.Request, who *viewer) (commitView, error) {
	ctx := r.Context()
	if _, err := query(r); err != nil {
		return commitView{}, err
	}
	repo, sha, err := commitPath(r.PathValue("path"))
	if err != nil {
		return commitView{}, err
	}
	v := commitView{Repo: repo, SHA: sha, Tasks: []commitTask{},
		PlanID: turtles.Task{Repo: turtles.Repo{Name: repo}, SHA: sha, Context: turtles.PlanContext}.ID()}
	if !who.canRead(repo) {
		return v, nil
	}
	tasks, err := s.cfg.History.List(ctx, state.Filter{Repo: repo, SHA: sha, Limit: commitLimit})
	if err != nil {
		return v, err
	}
	shas := map[string]bool{}
	for _, t := range tasks {
		shas[t.SHA] = true
	}
	if len(shas) > 1 {
		v.Candidates = sortedKeys(shas)
		return v, nil
	}
	slices.SortFunc(tasks, func(a, b state.Task) int { return strings.Compare(a.Context, b.Context) })
	for _, t := range tasks {
		v.SHA, v.PR = t.SHA, max(v.PR, t.PR)
		if v.Ref == "" {
			v.Ref = t.Ref
		}
		v.Tasks = append(v.Tasks, commitTask{Task: t, Actions: s.actions(ctx, t.ID)})
	}
	v.PlanID = turtles.Task{Repo: turtles.Repo{Name: repo}, SHA: v.SHA, Context: turtles.PlanContext}.ID()
	v.Summary = summarize(tasks)
	if v.PR > 0 {
		if v.Pushes, err = s.pushes(ctx, repo, v.PR, v.SHA); err != nil {
			return v, err
		}
	}
	return v, nil
}

// pushes returns the commits of pull request pr of repo but except,
// newest first.
func (s *Server) pushes(ctx context.Context, repo string, pr int, except string) ([]push, error) {
	tasks, err := s.cfg.History.List(ctx, state.Filter{Repo: repo, PR: pr, Limit: commitLimit})
	if err != nil {
		return nil, err
	}
	by := map[string][]state.Task{}
	for _, t := range tasks {
		if t.SHA != except {
			by[t.SHA] = append(by[t.SHA], t)
		}
	}
	var out []push
	for sha, ts := range by {
		p := push{SHA: sha, Created: ts[0].Created, Updated: ts[0].Updated, Contexts: len(ts), Summary: summarize(ts)}
		for _, t := range ts {
			if t.Created.Before(p.Created) {
				p.Created = t.Created
			}
			if t.Updated.After(p.Updated) {
				p.Updated = t.Updated
			}
		}
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b push) int {
		if c := b.Created.Compare(a.Created); c != 0 {
			return c
		}
		return strings.Compare(a.SHA, b.SHA)
	})
	return out, nil
}

// summarize counts tasks by outcome (or state, until they finish), in
// words: "2 success, 1 failure, 1 running".
func summarize(tasks []state.Task) string {
	order := []string{"success", "failure", "infra", "cancelled", "running", "retrying", "queued"}
	n := map[string]int{}
	for _, t := range tasks {
		n[outcomeOf(t)]++
	}
	var parts []string
	for _, k := range order {
		if n[k] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n[k], k))
		}
	}
	return strings.Join(parts, ", ")
}
