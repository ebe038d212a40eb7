package hook

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/turtles-ci/turtles"
	"github.com/turtles-ci/turtles/command"
	"github.com/turtles-ci/turtles/gate"
)

// GitLab's X-Gitlab-Event values that turtles uses.
const (
	GitLabPush         = "Push Hook"
	GitLabTagPush      = "Tag Push Hook"
	GitLabMergeRequest = "Merge Request Hook"
	GitLabNote         = "Note Hook"
	// GitLabSystem is an instance's system hook: push, tag push and merge
	// request events of every project, told apart by object_kind.
	GitLabSystem = "System Hook"
)

// systemKinds maps a system hook's object_kind to the project event of
// the same shape.
var systemKinds = map[string]string{"push": GitLabPush, "tag_push": GitLabTagPush, "merge_request": GitLabMergeRequest}

// ParseGitLab turns one GitLab webhook payload into the tasks it asks for:
// one plan task for a pushed commit. Merge requests and comment commands
// go to the gate (a GitLab payload never says whether its author may run
// code) and are not returned here. Events that need no work give nil tasks
// and no error; an error means the payload is malformed.
func ParseGitLab(event string, body []byte, pool string, now time.Time) ([]turtles.Task, error) {
	p, err := parseGitLab(event, body, pool, now)
	return p.tasks, err
}

func parseGitLab(event string, body []byte, pool string, now time.Time) (parsed, error) {
	if pool == "" {
		pool = turtles.DefaultPool
	}
	if event == GitLabSystem {
		var k struct {
			ObjectKind string `json:"object_kind"`
		}
		if err := json.Unmarshal(body, &k); err != nil {
			return parsed{}, fmt.Errorf("system hook: decode payload: %w", err)
		}
		if systemKinds[k.ObjectKind] == "" {
			return parsed{ignored: fmt.Sprintf("system hook %q is not used by turtles", k.ObjectKind)}, nil
		}
		event = systemKinds[k.ObjectKind]
	}
	switch event {
	case GitLabPush, GitLabTagPush:
		return parseGitLabPush(event, body, pool, now)
	case GitLabMergeRequest:
		return parseGitLabMR(body, pool)
	case GitLabNote:
		return parseGitLabNote(body, pool)
	}
	return parsed{ignored: fmt.Sprintf("event %q is not used by turtles", event)}, nil
}

// glProject is the part of a payload's "project" object we use. Statuses
// go to it, and commits are fetched from it: for a merge request from a
// fork, the target project, which keeps every merge request's head.
type glProject struct {
	PathWithNamespace string `json:"path_with_namespace"`
	GitHTTPURL        string `json:"git_http_url"`
}

func (p *glProject) repo() (turtles.Repo, error) {
	if p == nil {
		return turtles.Repo{}, errors.New("payload has no project")
	}
	return turtles.Repo{Name: p.PathWithNamespace, CloneURL: p.GitHTTPURL}, nil
}

type glUser struct {
	ID       int64  `json:"id"`
	Username string `json:"username"`
}

type glPushPayload struct {
	Ref    string `json:"ref"`
	Before string `json:"before"`
	After  string `json:"after"`
	// CheckoutSHA is the commit a tag points to (After is the tag object
	// of an annotated tag); null when the ref was deleted.
	CheckoutSHA *string    `json:"checkout_sha"`
	Project     *glProject `json:"project"`
}

func parseGitLabPush(event string, body []byte, pool string, now time.Time) (parsed, error) {
	var p glPushPayload
	if err := json.Unmarshal(body, &p); err != nil {
		return parsed{}, fmt.Errorf("%s: decode payload: %w", event, err)
	}
	sha := p.After
	if event == GitLabTagPush && p.CheckoutSHA != nil {
		sha = *p.CheckoutSHA
	}
	if sha == zeroSHA {
		return parsed{ignored: fmt.Sprintf("push deleted %s: nothing to test", p.Ref)}, nil
	}
	repo, err := p.Project.repo()
	if err != nil {
		return parsed{}, fmt.Errorf("%s: %w", event, err)
	}
	t := planTask(repo, sha, pool, now)
	t.Ref = p.Ref
	if event == GitLabPush && turtles.IsSHA(p.Before) && p.Before != zeroSHA {
		t.BaseSHA = p.Before // zero for a new branch: nothing to compare with
	}
	// Only members who may push to the project itself push to it.
	t.Trusted = true
	if err := t.Validate(); err != nil {
		return parsed{}, fmt.Errorf("%s: %w", event, err)
	}
	return parsed{tasks: []turtles.Task{t}}, nil
}

type glMRPayload struct {
	User             *glUser    `json:"user"`
	Project          *glProject `json:"project"`
	ObjectAttributes *struct {
		IID          int    `json:"iid"`
		Action       string `json:"action"`
		AuthorID     int64  `json:"author_id"`
		TargetBranch string `json:"target_branch"`
		// Oldrev is the previous head, sent only when commits changed.
		Oldrev     string `json:"oldrev"`
		LastCommit struct {
			ID string `json:"id"`
		} `json:"last_commit"`
		DiffRefs *struct {
			BaseSHA string `json:"base_sha"`
		} `json:"diff_refs"`
	} `json:"object_attributes"`
}

// parseGitLabMR hands a merge request whose head is new to reviewers
// (opened, reopened, or updated with new commits) to the gate, and
// cancels the tasks of the head an update replaced. Other updates (title,
// labels, approvals) change nothing to test.
//
// The gate needs the author's username, and the payload names only the
// author's id and the user who acted. When those differ (a maintainer
// rebased or pushed to someone else's merge request), the hook cannot say
// whose code it is: it leaves the new head to the scanner, which looks
// the author up, rather than trust the wrong person.
func parseGitLabMR(body []byte, pool string) (parsed, error) {
	var p glMRPayload
	if err := json.Unmarshal(body, &p); err != nil {
		return parsed{}, fmt.Errorf("merge request: decode payload: %w", err)
	}
	a := p.ObjectAttributes
	if a == nil {
		return parsed{}, errors.New("merge request: payload has no object_attributes")
	}
	head := a.LastCommit.ID
	newCommits := a.Oldrev != "" && a.Oldrev != head
	switch {
	case a.Action == "open" || a.Action == "reopen":
	case a.Action == "update" && newCommits:
	default:
		return parsed{ignored: fmt.Sprintf("merge request action %q brings no new commit", a.Action)}, nil
	}
	if a.IID <= 0 {
		return parsed{}, fmt.Errorf("merge request: bad iid %d", a.IID)
	}
	repo, err := p.Project.repo()
	if err != nil {
		return parsed{}, fmt.Errorf("merge request: %w", err)
	}
	t := planTask(repo, head, pool, time.Time{})
	t.PR = a.IID
	t.Ref = fmt.Sprintf("refs/merge-requests/%d/head", a.IID)
	t.Base = a.TargetBranch
	if a.DiffRefs != nil && turtles.IsSHA(a.DiffRefs.BaseSHA) {
		t.BaseSHA = a.DiffRefs.BaseSHA
	}
	if err := t.Validate(); err != nil {
		return parsed{}, fmt.Errorf("merge request: %w", err)
	}
	var out parsed
	if newCommits && turtles.IsSHA(a.Oldrev) {
		out.cancel = &superseded{repo: repo.Name, sha: a.Oldrev, pr: a.IID}
	}
	if p.User == nil || p.User.Username == "" || p.User.ID != a.AuthorID {
		if out.cancel == nil {
			out.ignored = "merge request changed by someone other than its author: left to the scanner"
		}
		return out, nil
	}
	out.requests = []gate.Request{{Repo: repo, PR: a.IID, SHA: head, Ref: t.Ref, Base: t.Base, BaseSHA: t.BaseSHA,
		User: p.User.Username, Pool: pool}}
	return out, nil
}

type glNotePayload struct {
	User             *glUser    `json:"user"`
	Project          *glProject `json:"project"`
	ObjectAttributes *struct {
		Note         string `json:"note"`
		NoteableType string `json:"noteable_type"`
		// Action is "create" or "update" (GitLab 16+; older ones send
		// only new notes and no action).
		Action string `json:"action"`
		System bool   `json:"system"`
	} `json:"object_attributes"`
	MergeRequest *struct {
		IID int `json:"iid"`
	} `json:"merge_request"`
}

// parseGitLabNote turns the commands of a new comment on a merge request
// into a request for the gate, which checks the commenter and looks up the
// merge request's head.
func parseGitLabNote(body []byte, pool string) (parsed, error) {
	var p glNotePayload
	if err := json.Unmarshal(body, &p); err != nil {
		return parsed{}, fmt.Errorf("note: decode payload: %w", err)
	}
	a := p.ObjectAttributes
	switch {
	case a == nil:
		return parsed{}, errors.New("note: payload has no object_attributes")
	case a.Action != "" && a.Action != "create":
		// An edit could turn old prose into a command long after.
		return parsed{ignored: fmt.Sprintf("note action %q is not used", a.Action)}, nil
	case a.NoteableType != "MergeRequest":
		return parsed{ignored: fmt.Sprintf("note on a %s, not a merge request", a.NoteableType)}, nil
	case a.System:
		return parsed{ignored: "system note"}, nil
	case p.MergeRequest == nil || p.MergeRequest.IID <= 0:
		return parsed{}, errors.New("note: merge request note without a merge request iid")
	case p.User == nil || p.User.Username == "":
		return parsed{}, errors.New("note: payload has no user")
	}
	cmds := command.Parse(a.Note)
	if len(cmds) == 0 {
		return parsed{ignored: "comment has no command"}, nil
	}
	repo, err := p.Project.repo()
	if err != nil {
		return parsed{}, fmt.Errorf("note: %w", err)
	}
	if err := planTask(repo, zeroSHA, pool, time.Time{}).Validate(); err != nil {
		return parsed{}, fmt.Errorf("note: %w", err)
	}
	return parsed{requests: []gate.Request{{Repo: repo, PR: p.MergeRequest.IID, User: p.User.Username,
		Commands: cmds, Pool: pool}}}, nil
}
