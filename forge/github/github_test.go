package github_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/turtles-ci/turtles/forge"
	"github.com/turtles-ci/turtles/forge/github"
	"github.com/turtles-ci/turtles/forge/github/githubtest"
)

const (
	token = "ghp_s3cretT0kenThatMustNeverLeak"
	sha   = "0123456789abcdef0123456789abcdef01234567"
)

func newClient(t *testing.T, srv *githubtest.Server, tok string, log *slog.Logger) *github.Client {
	t.Helper()
	c, err := github.New(github.Config{BaseURL: srv.URL, Token: tok, Log: log})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return c
}

func TestSetStatus(t *testing.T) {
	srv := githubtest.NewServer(t, token)
	var logs bytes.Buffer
	c := newClient(t, srv, token, slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	ctx := context.Background()
	long := strings.Repeat("ü", 200)

	sets := []forge.Status{
		{Context: "linux", State: forge.Pending, Description: "Queued"},
		{Context: "linux", State: forge.Success, TargetURL: "https://ci.example/logs/1", Description: "Tests passed"},
		{Context: "bsd", State: forge.Failure, Description: long},
	}
	for _, st := range sets {
		if err := c.SetStatus(ctx, "octo/cat", sha, st); err != nil {
			t.Fatalf("SetStatus(%+v): %v", st, err)
		}
	}

	want := []githubtest.Status{
		{Repo: "octo/cat", SHA: sha, Context: "linux", State: "pending", Description: "Queued"},
		{Repo: "octo/cat", SHA: sha, Context: "linux", State: "success", TargetURL: "https://ci.example/logs/1", Description: "Tests passed"},
		{Repo: "octo/cat", SHA: sha, Context: "bsd", State: "failure", Description: strings.Repeat("ü", 139) + "…"},
	}
	if diff := cmp.Diff(want, srv.Statuses()); diff != "" {
		t.Errorf("statuses (-want +got):\n%s", diff)
	}
	reqs := srv.Requests()
	if len(reqs) != len(sets) {
		t.Fatalf("got %d requests, want %d", len(reqs), len(sets))
	}
	r := reqs[0]
	if got, want := r.Header.Get("Authorization"), "Bearer "+token; got != want {
		t.Errorf("Authorization = %q, want the bearer token", got)
	}
	if got := r.Header.Get("User-Agent"); got != "turtles" {
		t.Errorf("User-Agent = %q, want %q", got, "turtles")
	}
	if r.Path != "/repos/octo/cat/statuses/"+sha {
		t.Errorf("path = %q", r.Path)
	}
	if strings.Contains(logs.String(), token) {
		t.Errorf("token in logs:\n%s", logs.String())
	}
}

func TestSetStatusErrors(t *testing.T) {
	reset := time.Now().Add(time.Hour).Truncate(time.Second)
	tests := []struct {
		name  string
		repo  string
		sha   string
		token string // client's token; default the server's
		state forge.State
		fault *githubtest.Fault
		close bool // stop the server first

		wantPermanent bool
		wantRateLimit bool
		wantReset     time.Time     // exact reset, if not zero
		wantWait      time.Duration // reset about now+wantWait, if not zero
		wantRequests  int
	}{
		{name: "bad credentials", token: "ghp_wrong", wantPermanent: true, wantRequests: 1},
		{name: "forbidden", fault: &githubtest.Fault{Code: 403}, wantPermanent: true, wantRequests: 1},
		{name: "not found", fault: &githubtest.Fault{Code: 404}, wantPermanent: true, wantRequests: 1},
		{name: "unprocessable", fault: &githubtest.Fault{Code: 422}, wantPermanent: true, wantRequests: 1},
		{name: "bad request", fault: &githubtest.Fault{Code: 400}, wantPermanent: true, wantRequests: 1},
		{name: "bad gateway", fault: &githubtest.Fault{Code: 502}, wantRequests: 1},
		{name: "internal error", fault: &githubtest.Fault{Code: 500}, wantRequests: 1},
		{name: "unavailable", fault: &githubtest.Fault{Code: 503}, wantRequests: 1},
		{name: "primary rate limit", fault: ptr(githubtest.RateLimited(reset)), wantRateLimit: true, wantReset: reset, wantRequests: 1},
		{name: "secondary rate limit 429", fault: ptr(githubtest.SecondaryRateLimited(30 * time.Second)), wantRateLimit: true, wantWait: 30 * time.Second, wantRequests: 1},
		{
			name: "secondary rate limit 403",
			fault: &githubtest.Fault{
				Code:             403,
				Header:           http.Header{"Retry-After": {"20"}},
				DocumentationURL: "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits",
			},
			wantRateLimit: true, wantWait: 20 * time.Second, wantRequests: 1,
		},
		{name: "403 with retry-after only", fault: &githubtest.Fault{Code: 403, Header: http.Header{"Retry-After": {"5"}}}, wantRateLimit: true, wantWait: 5 * time.Second, wantRequests: 1},
		{name: "network error", close: true},
		{name: "repo without owner", repo: "cat", wantPermanent: true},
		{name: "repo with extra path", repo: "octo/cat/statuses", wantPermanent: true},
		{name: "repo dot dot", repo: "../cat", wantPermanent: true},
		{name: "repo with query", repo: "octo/cat?x=1", wantPermanent: true},
		{name: "empty repo", repo: "-", wantPermanent: true},
		{name: "short sha", sha: "abc123", wantPermanent: true},
		{name: "unknown state", state: "green", wantPermanent: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := githubtest.NewServer(t, token)
			tok := tt.token
			if tok == "" {
				tok = token
			}
			c := newClient(t, srv, tok, nil)
			if tt.fault != nil {
				srv.FailNextWith(1, *tt.fault)
			}
			if tt.close {
				srv.Close()
			}
			repo, s, state := "octo/cat", sha, forge.Pending
			if tt.repo == "-" {
				repo = ""
			} else if tt.repo != "" {
				repo = tt.repo
			}
			if tt.sha != "" {
				s = tt.sha
			}
			if tt.state != "" {
				state = tt.state
			}

			before := time.Now()
			err := c.SetStatus(context.Background(), repo, s, forge.Status{Context: "linux", State: state, Description: "x"})
			after := time.Now()
			if err == nil {
				t.Fatal("SetStatus succeeded, want an error")
			}
			if got := errors.Is(err, forge.ErrPermanent); got != tt.wantPermanent {
				t.Errorf("errors.Is(%v, ErrPermanent) = %v, want %v", err, got, tt.wantPermanent)
			}
			var rl *forge.RateLimitError
			if got := errors.As(err, &rl); got != tt.wantRateLimit {
				t.Errorf("errors.As(%v, *RateLimitError) = %v, want %v", err, got, tt.wantRateLimit)
			}
			if !tt.wantReset.IsZero() && rl != nil && !rl.Reset.Equal(tt.wantReset) {
				t.Errorf("Reset = %v, want %v", rl.Reset, tt.wantReset)
			}
			if tt.wantWait != 0 && rl != nil {
				lo, hi := before.Add(tt.wantWait-time.Second), after.Add(tt.wantWait+time.Second)
				if rl.Reset.Before(lo) || rl.Reset.After(hi) {
					t.Errorf("Reset = %v, want between %v and %v", rl.Reset, lo, hi)
				}
			}
			if strings.Contains(err.Error(), token) || strings.Contains(err.Error(), tok) {
				t.Errorf("token in error: %v", err)
			}
			if got := len(srv.Requests()); !tt.close && got != tt.wantRequests {
				t.Errorf("got %d requests, want %d", got, tt.wantRequests)
			}
			if got := len(srv.Statuses()); got != 0 {
				t.Errorf("got %d statuses, want none", got)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

// After a retryable failure the same client succeeds: nothing sticks.
func TestSetStatusRecovers(t *testing.T) {
	srv := githubtest.NewServer(t, token)
	c := newClient(t, srv, token, nil)
	srv.FailNext(2, http.StatusBadGateway)
	st := forge.Status{Context: "linux", State: forge.Success}
	for i := range 2 {
		if err := c.SetStatus(context.Background(), "octo/cat", sha, st); err == nil || errors.Is(err, forge.ErrPermanent) {
			t.Fatalf("attempt %d: err = %v, want a retryable error", i+1, err)
		}
	}
	if err := c.SetStatus(context.Background(), "octo/cat", sha, st); err != nil {
		t.Fatalf("third attempt: %v", err)
	}
	got, ok := srv.Final("octo/cat", sha, "linux")
	if !ok || got.State != "success" {
		t.Errorf("Final = %+v, %v; want success", got, ok)
	}
}

func TestNew(t *testing.T) {
	tests := []struct {
		name    string
		cfg     github.Config
		wantErr bool
	}{
		{name: "defaults", cfg: github.Config{Token: token}},
		{name: "enterprise", cfg: github.Config{Token: token, BaseURL: "https://ghe.example.com/api/v3"}},
		{name: "no token", cfg: github.Config{}, wantErr: true},
		{name: "token with newline", cfg: github.Config{Token: token + "\n"}, wantErr: true},
		{name: "relative base", cfg: github.Config{Token: token, BaseURL: "api.github.com"}, wantErr: true},
		{name: "ftp base", cfg: github.Config{Token: token, BaseURL: "ftp://example.com/"}, wantErr: true},
		{name: "credentials in base", cfg: github.Config{Token: token, BaseURL: "https://u:p@example.com/"}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := github.New(tt.cfg)
			if (err != nil) != tt.wantErr {
				t.Fatalf("New: err = %v, want error %v", err, tt.wantErr)
			}
			if err != nil && strings.Contains(err.Error(), token) {
				t.Errorf("token in error: %v", err)
			}
		})
	}
}

func TestTruncate(t *testing.T) {
	tests := []struct {
		name string
		in   string
		max  int
		want string
	}{
		{name: "short", in: "Tests passed", max: 140, want: "Tests passed"},
		{name: "exact", in: strings.Repeat("a", 140), max: 140, want: strings.Repeat("a", 140)},
		{name: "one over", in: strings.Repeat("a", 141), max: 140, want: strings.Repeat("a", 139) + "…"},
		{name: "multibyte", in: strings.Repeat("日本", 100), max: 5, want: "日本日本…"},
		{name: "invalid utf8", in: "ok\xffok", max: 140, want: "ok\uFFFDok"},
		{name: "zero", in: "abc", max: 0, want: ""},
		{name: "one", in: "abc", max: 1, want: "…"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := forge.Truncate(tt.in, tt.max); got != tt.want {
				t.Errorf("Truncate(%q, %d) = %q, want %q", tt.in, tt.max, got, tt.want)
			}
		})
	}
}
