package githubtest_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/turtles-ci/turtles/forge/github/githubtest"
)

func post(t *testing.T, url, auth, body string) int {
	t.Helper()
	req, err := http.NewRequest("POST", url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestServer(t *testing.T) {
	srv := githubtest.NewServer(t, "tok")
	path := srv.URL + "/repos/o/r/statuses/abc"
	tests := []struct {
		name     string
		url      string
		auth     string
		body     string
		wantCode int
	}{
		{name: "bearer", url: path, auth: "Bearer tok", body: `{"state":"pending","context":"a","description":"Queued"}`, wantCode: 201},
		{name: "token scheme", url: path, auth: "token tok", body: `{"state":"success","context":"a","target_url":"https://x/1"}`, wantCode: 201},
		{name: "no context", url: path, auth: "token tok", body: `{"state":"error"}`, wantCode: 201},
		{name: "wrong token", url: path, auth: "Bearer nope", body: `{"state":"success"}`, wantCode: 401},
		{name: "no auth", url: path, body: `{"state":"success"}`, wantCode: 401},
		{name: "bad state", url: path, auth: "Bearer tok", body: `{"state":"green"}`, wantCode: 422},
		{name: "long description", url: path, auth: "Bearer tok", body: `{"state":"failure","description":"` + strings.Repeat("x", 141) + `"}`, wantCode: 422},
		{name: "bad json", url: path, auth: "Bearer tok", body: `{`, wantCode: 400},
		{name: "unknown path", url: srv.URL + "/repos/o/r/pulls", auth: "Bearer tok", body: `{}`, wantCode: 404},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := post(t, tt.url, tt.auth, tt.body); got != tt.wantCode {
				t.Errorf("code = %d, want %d", got, tt.wantCode)
			}
		})
	}

	want := []githubtest.Status{
		{Repo: "o/r", SHA: "abc", Context: "a", State: "pending", Description: "Queued"},
		{Repo: "o/r", SHA: "abc", Context: "a", State: "success", TargetURL: "https://x/1"},
		{Repo: "o/r", SHA: "abc", Context: "default", State: "error"},
	}
	if diff := cmp.Diff(want, srv.WaitStatuses(t, 3, time.Second)); diff != "" {
		t.Errorf("statuses (-want +got):\n%s", diff)
	}
	if got, ok := srv.Final("o/r", "abc", "a"); !ok || got.State != "success" {
		t.Errorf("Final = %+v, %v; want the success", got, ok)
	}
	if _, ok := srv.Final("o/r", "abc", "b"); ok {
		t.Error("Final of an unknown context found something")
	}
	var codes []int
	for _, r := range srv.Requests() {
		codes = append(codes, r.Code)
	}
	if diff := cmp.Diff([]int{201, 201, 201, 401, 401, 422, 422, 400, 404}, codes); diff != "" {
		t.Errorf("recorded codes (-want +got):\n%s", diff)
	}
}

func TestFailNext(t *testing.T) {
	srv := githubtest.NewServer(t, "")
	srv.FailNext(2, http.StatusBadGateway)
	var got []int
	for range 3 {
		got = append(got, post(t, srv.URL+"/repos/o/r/statuses/abc", "", `{"state":"success"}`))
	}
	if diff := cmp.Diff([]int{502, 502, 201}, got); diff != "" {
		t.Errorf("codes (-want +got):\n%s", diff)
	}
	if n := len(srv.Statuses()); n != 1 {
		t.Errorf("got %d statuses, want 1", n)
	}
}

// WaitStatuses must wake up on a status that arrives while it waits.
func TestWaitStatusesWakes(t *testing.T) {
	srv := githubtest.NewServer(t, "")
	done := make(chan struct{})
	go func() {
		defer close(done)
		req, _ := http.NewRequest("POST", srv.URL+"/repos/o/r/statuses/abc", strings.NewReader(`{"state":"success"}`))
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	}()
	if got := srv.WaitStatuses(t, 1, 10*time.Second); len(got) != 1 {
		t.Errorf("got %d statuses, want 1", len(got))
	}
	<-done
}
