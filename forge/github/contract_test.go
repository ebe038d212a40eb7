package github_test

import (
	"testing"

	"github.com/turtles-ci/turtles/forge"
	"github.com/turtles-ci/turtles/forge/forgetest"
	"github.com/turtles-ci/turtles/forge/github"
	"github.com/turtles-ci/turtles/forge/github/githubtest"
)

// fake adapts githubtest to the contract suite.
type fake struct {
	s     *githubtest.Server
	pulls map[string][]githubtest.PullRequest
}

func (f fake) OpenPullRequest(repo string, pr forge.PullRequest) {
	f.pulls[repo] = append(f.pulls[repo], githubtest.PullRequest{Number: pr.Number, HeadSHA: pr.HeadSHA, BaseRef: pr.BaseRef, BaseSHA: pr.BaseSHA, Author: pr.Author})
	f.s.SetPulls(repo, f.pulls[repo]...)
}

func (f fake) SetBranch(repo, branch, sha string)          { f.s.SetBranch(repo, branch, sha) }
func (f fake) SetFile(repo, sha, path string, data []byte) { f.s.SetFile(repo, sha, path, data) }
func (f fake) GrantPush(repo, user string)                 { f.s.SetPermission(repo, user, "write") }
func (f fake) GrantRead(repo, user string)                 { f.s.SetPermission(repo, user, "read") }
func (f fake) AddOrgMember(org, user string)               { f.s.AddMember(org, user) }

func TestContract(t *testing.T) {
	forgetest.Run(t, func(t *testing.T) forgetest.Env {
		srv := githubtest.NewServer(t, token)
		return forgetest.Env{Client: newClient(t, srv, token, nil), Fake: fake{s: srv, pulls: map[string][]githubtest.PullRequest{}},
			Repo: "octo/hello", Org: "octo"}
	})
}

func (f fake) MakePrivate(repo string) { f.s.SetPrivate(repo) }

func TestAccountContract(t *testing.T) {
	forgetest.RunAccount(t, func(t *testing.T) forgetest.AccountEnv {
		srv := githubtest.NewServer(t, token)
		ep, err := github.OAuthEndpoint(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		return forgetest.AccountEnv{
			New: func(tok string) (forge.Account, error) {
				return github.NewAccount(github.AccountConfig{BaseURL: srv.URL, Token: tok})
			},
			Endpoint: ep, OAuth: srv.OAuth(), Fake: fake{s: srv}, Repo: "octo/hello"}
	})
}
