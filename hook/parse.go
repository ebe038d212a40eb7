package hook

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/turtles-ci/turtles"
)

// ParseGitHub turns one GitHub webhook payload into the tasks it asks for:
// one plan task for a pushed commit or for the head of an opened, updated or
// reopened pull request. Events that need no work (ping, other events, other
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
	// ignored says, for the sender, why nothing is to be done; empty when
	// there are tasks or the event was a ping.
	ignored string
}

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
	// Only people with write access can push to the repository itself.
	t.Trusted = true
	if err := t.Validate(); err != nil {
		return parsed{}, fmt.Errorf("push: %w", err)
	}
	return parsed{tasks: []turtles.Task{t}}, nil
}

type pullRequestPayload struct {
	Action      string `json:"action"`
	Number      int    `json:"number"`
	PullRequest *struct {
		Number            int    `json:"number"`
		AuthorAssociation string `json:"author_association"`
		Head              struct {
			SHA string `json:"sha"`
		} `json:"head"`
	} `json:"pull_request"`
	// Repository is the base repository: where the pull request was opened
	// and where statuses go, also for pull requests from forks.
	Repository *repository `json:"repository"`
}

// testedActions are the pull request actions that put a new head commit in
// front of reviewers. Others (closed, labeled, edited...) change nothing to
// test.
var testedActions = map[string]bool{"opened": true, "synchronize": true, "reopened": true}

// trustedAssociations are the authors whose pull requests may use secrets:
// those who could push the same code to the repository anyway.
var trustedAssociations = map[string]bool{"OWNER": true, "MEMBER": true, "COLLABORATOR": true}

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
	t.Trusted = trustedAssociations[p.PullRequest.AuthorAssociation]
	if err := t.Validate(); err != nil {
		return parsed{}, fmt.Errorf("pull_request: %w", err)
	}
	return parsed{tasks: []turtles.Task{t}}, nil
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
