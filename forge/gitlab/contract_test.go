package gitlab_test

import (
	"testing"

	"github.com/turtles-ci/turtles/forge"
	"github.com/turtles-ci/turtles/forge/forgetest"
	"github.com/turtles-ci/turtles/forge/gitlab"
	"github.com/turtles-ci/turtles/forge/gitlab/gitlabtest"
)

// fake adapts gitlabtest to the contract suite.
type fake struct {
	s   *gitlabtest.Server
	mrs map[string][]gitlabtest.MergeRequest
}

func (f fake) OpenPullRequest(repo string, pr forge.PullRequest) {
	mrs := append(f.mrs[repo], gitlabtest.MergeRequest{IID: pr.Number, HeadSHA: pr.HeadSHA, TargetBranch: pr.BaseRef, BaseSHA: pr.BaseSHA, Author: pr.Author})
	f.mrs[repo] = mrs
	f.s.AddUser(pr.Author)
	f.s.SetMergeRequests(repo, mrs...)
}

func (f fake) SetBranch(repo, branch, sha string)          { f.s.SetBranch(repo, branch, sha) }
func (f fake) SetFile(repo, sha, path string, data []byte) { f.s.SetFile(repo, sha, path, data) }
func (f fake) GrantPush(repo, user string)                 { f.s.SetProjectAccess(repo, user, gitlabtest.Developer) }
func (f fake) GrantRead(repo, user string)                 { f.s.SetProjectAccess(repo, user, gitlabtest.Reporter) }
func (f fake) AddOrgMember(org, user string)               { f.s.SetGroupAccess(org, user, gitlabtest.Developer) }

func TestContract(t *testing.T) {
	forgetest.Run(t, func(t *testing.T) forgetest.Env {
		srv := gitlabtest.NewServer(t, token)
		return forgetest.Env{Client: newClient(t, srv), Fake: fake{s: srv, mrs: map[string][]gitlabtest.MergeRequest{}}, Repo: "group/sub/hello", Org: "group"}
	})
}

func (f fake) MakePrivate(repo string) { f.s.SetPrivate(repo) }

func TestAccountContract(t *testing.T) {
	forgetest.RunAccount(t, func(t *testing.T) forgetest.AccountEnv {
		srv := gitlabtest.NewServer(t, token)
		ep, err := gitlab.OAuthEndpoint(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		return forgetest.AccountEnv{
			New: func(tok string) (forge.Account, error) {
				return gitlab.NewAccount(gitlab.AccountConfig{BaseURL: srv.URL, Token: tok})
			},
			Endpoint: ep, OAuth: srv.OAuth(), Fake: fake{s: srv}, Repo: "group/sub/hello"}
	})
}
