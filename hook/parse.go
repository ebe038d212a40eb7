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

// ParseGitHub turns one GitHub webhook payload into the tasks it asks for:
// one plan task for a pushed commit or for the head of an opened, updated or
// reopened pull request by a trusted author (the others go to the gate,
// and are not returned here). Events that need no work (ping, other events, other
// pull request actions, branch deletions) give nil tasks and no error. An
// error means the payload is malformed and will not get better by retrying.
//
// pool is the pool of the plan tasks (turtles.DefaultPool when empty) and
// now their creation time. Every returned task passes Validate.
func ParseGitHub(event string, body []byte, pool string, now time.Time) ([]turtles.Task, error) {
	p, err := parseGitHub(event, body, pool, now)
	return p.tasks, err
}

// parsed is what a payload asks for.
type parsed struct {
	tasks []turtles.Task
	// requests go to the gate: they need forge lookups.
	requests []gate.Request
	// cancel names the commit a new push to a pull request superseded.
	cancel *superseded
	// ignored says, for the sender, why nothing is to be done; empty when
	// there is work or the event was a ping.
	ignored string
}

// superseded is a pull request's old head, whose tasks are cancelled.
type superseded struct {
	repo, sha string
	pr        int
}

func (p parsed) empty() bool { return len(p.tasks) == 0 && len(p.requests) == 0 && p.cancel == nil }

func parseGitHub(event string, body []byte, pool string, now time.Time) (parsed, error) {
	if pool == "" {
		pool = turtles.DefaultPool
	}
	switch event {
	case "ping":
		if !json.Valid(body) {
			return parsed{}, errors.New("ping: body is not valid JSON")
		}
		return parsed{}, nil
	case "push":
		return parsePush(body, pool, now)
	case "pull_request":
		return parsePullRequest(body, pool, now)
	case "issue_comment":
		return parseIssueComment(body, pool)
	}
	// Not parsed at all: we do not know its shape and do not need to.
	return parsed{ignored: fmt.Sprintf("event %q is not used by turtles", event)}, nil
}

// repository is the part of a payload's "repository" object we use.
type repository struct {
	FullName string `json:"full_name"`
	CloneURL string `json:"clone_url"`
}

func (r *repository) repo() (turtles.Repo, error) {
	if r == nil {
		return turtles.Repo{}, errors.New("payload has no repository")
	}
	return turtles.Repo{Name: r.FullName, CloneURL: r.CloneURL}, nil
}

type pushPayload struct {
	Ref        string      `json:"ref"`
	Before     string      `json:"before"`
	After      string      `json:"after"`
	Deleted    bool        `json:"deleted"`
	Repository *repository `json:"repository"`
}

// zeroSHA is what GitHub sends as "after" when a ref was deleted.
const zeroSHA = "0000000000000000000000000000000000000000"

func parsePush(body []byte, pool string, now time.Time) (parsed, error) {
	var p pushPayload
	if err := json.Unmarshal(body, &p); err != nil {
		return parsed{}, fmt.Errorf("push: decode payload: %w", err)
	}
	if p.Deleted || p.After == zeroSHA {
		return parsed{ignored: fmt.Sprintf("push deleted %s: nothing to test", p.Ref)}, nil
	}
	repo, err := p.Repository.repo()
	if err != nil {
		return parsed{}, fmt.Errorf("push: %w", err)
	}
	t := planTask(repo, p.After, pool, now)
	t.Ref = p.Ref
	if turtles.IsSHA(p.Before) && p.Before != zeroSHA {
		t.BaseSHA = p.Before // zero for a new branch: nothing to compare with
	}
	// Only people with write access can push to the repository itself.
	t.Trusted = true
	if err := t.Validate(); err != nil {
		return parsed{}, fmt.Errorf("push: %w", err)
	}
	return parsed{tasks: []turtles.Task{t}}, nil
}

type user struct {
	Login string `json:"login"`
}

type pullRequestPayload struct {
	Action string `json:"action"`
	Number int    `json:"number"`
	// Before is the old head of a synchronize.
	Before      string `json:"before"`
	PullRequest *struct {
		Number            int    `json:"number"`
		AuthorAssociation string `json:"author_association"`
		User              user   `json:"user"`
		Head              struct {
			SHA string `json:"sha"`
		} `json:"head"`
		Base struct {
			Ref string `json:"ref"`
			SHA string `json:"sha"`
		} `json:"base"`
	} `json:"pull_request"`
	// Repository is the base repository: where the pull request was opened
	// and where statuses go, also for pull requests from forks.
	Repository *repository `json:"repository"`
}

// testedActions are the pull request actions that put a new head commit in
// front of reviewers. Others (closed, labeled, edited...) change nothing to
// test.
var testedActions = map[string]bool{"opened": true, "synchronize": true, "reopened": true}

func parsePullRequest(body []byte, pool string, now time.Time) (parsed, error) {
	var p pullRequestPayload
	if err := json.Unmarshal(body, &p); err != nil {
		return parsed{}, fmt.Errorf("pull_request: decode payload: %w", err)
	}
	if !testedActions[p.Action] {
		return parsed{ignored: fmt.Sprintf("pull_request action %q is not tested", p.Action)}, nil
	}
	if p.PullRequest == nil {
		return parsed{}, errors.New("pull_request: payload has no pull_request")
	}
	number := p.PullRequest.Number
	if number == 0 {
		number = p.Number
	}
	if number <= 0 {
		return parsed{}, fmt.Errorf("pull_request: bad number %d", number)
	}
	repo, err := p.Repository.repo()
	if err != nil {
		return parsed{}, fmt.Errorf("pull_request: %w", err)
	}
	t := planTask(repo, p.PullRequest.Head.SHA, pool, now)
	// The base repository serves the head of every pull request under this
	// ref, so a fork's commit is fetched without cloning the fork.
	t.Ref = fmt.Sprintf("refs/pull/%d/head", number)
	t.PR = number
	t.Base = p.PullRequest.Base.Ref
	if turtles.IsSHA(p.PullRequest.Base.SHA) {
		t.BaseSHA = p.PullRequest.Base.SHA
	}
	if err := t.Validate(); err != nil {
		return parsed{}, fmt.Errorf("pull_request: %w", err)
	}
	var out parsed
	if p.Action == "synchronize" && p.Before != t.SHA && turtles.IsSHA(p.Before) {
		out.cancel = &superseded{repo: repo.Name, sha: p.Before, pr: number}
	}
	// The payload cannot prove the author trusted: author_association says
	// MEMBER for an org member with read access, and what was true when it
	// was sent. The gate asks the forge (push access, org members), and
	// else waits for a maintainer; the association goes along as a hint.
	out.requests = []gate.Request{{Repo: repo, PR: number, SHA: t.SHA, Ref: t.Ref, Base: t.Base, BaseSHA: t.BaseSHA, User: p.PullRequest.User.Login,
		Association: p.PullRequest.AuthorAssociation, Pool: pool}}
	return out, nil
}

type issueCommentPayload struct {
	Action string `json:"action"`
	Issue  *struct {
		Number int `json:"number"`
		// PullRequest is set when the issue is a pull request.
		PullRequest *struct {
			URL string `json:"url"`
		} `json:"pull_request"`
	} `json:"issue"`
	Comment *struct {
		Body              string `json:"body"`
		AuthorAssociation string `json:"author_association"`
		User              user   `json:"user"`
	} `json:"comment"`
	Repository *repository `json:"repository"`
}

// parseIssueComment turns the commands of a new comment on a pull request
// into a request for the gate, which checks the commenter and looks up the
// pull request's head (the payload does not name it).
func parseIssueComment(body []byte, pool string) (parsed, error) {
	var p issueCommentPayload
	if err := json.Unmarshal(body, &p); err != nil {
		return parsed{}, fmt.Errorf("issue_comment: decode payload: %w", err)
	}
	switch {
	case p.Action != "created":
		// An edit could turn old prose into a command long after; only
		// new comments count.
		return parsed{ignored: fmt.Sprintf("issue_comment action %q is not used", p.Action)}, nil
	case p.Issue == nil || p.Comment == nil:
		return parsed{}, errors.New("issue_comment: payload has no issue or comment")
	case p.Issue.PullRequest == nil:
		return parsed{ignored: "comment on an issue, not a pull request"}, nil
	case p.Issue.Number <= 0:
		return parsed{}, fmt.Errorf("issue_comment: bad number %d", p.Issue.Number)
	}
	cmds := command.Parse(p.Comment.Body)
	if len(cmds) == 0 {
		return parsed{ignored: "comment has no command"}, nil
	}
	repo, err := p.Repository.repo()
	if err != nil {
		return parsed{}, fmt.Errorf("issue_comment: %w", err)
	}
	probe := planTask(repo, zeroSHA, pool, time.Time{})
	if err := probe.Validate(); err != nil {
		return parsed{}, fmt.Errorf("issue_comment: %w", err)
	}
	return parsed{requests: []gate.Request{{Repo: repo, PR: p.Issue.Number, User: p.Comment.User.Login,
		Association: p.Comment.AuthorAssociation, Commands: cmds, Pool: pool}}}, nil
}

func planTask(repo turtles.Repo, sha, pool string, now time.Time) turtles.Task {
	return turtles.Task{
		Version: turtles.TaskVersion,
		Kind:    turtles.KindPlan,
		Context: turtles.PlanContext,
		Repo:    repo,
		SHA:     sha,
		Pool:    pool,
		Attempt: 1,
		Created: now,
	}
}
