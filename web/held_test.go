package web

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/turtles-ci/turtles/store"
)

// TestHeldVM: an attempt with a held VM shows the command that resumes
// it, and the held VM is served like the log: to whoever may read the
// repository, to no one else.
func TestHeldVM(t *testing.T) {
	d := newDash(t)
	ml := d.tasks["main/lint"]
	key := store.AttemptPrefix(ml) + store.HeldName
	if err := d.st.Put(context.Background(), key, strings.NewReader("held machine"), "application/gzip"); err != nil {
		t.Fatal(err)
	}
	cfg := d.config()
	cfg.PublicURL = "https://ci.example.com/"
	page := "/tasks/" + ml.ID() + "/1"
	want := "turtles debug https://ci.example.com/tasks/" + ml.ID() + "/1"
	if body := serve(cfg, page).Body.String(); !strings.Contains(body, want) {
		t.Errorf("the page of an attempt with a held VM lacks %q", want)
	}
	if body := serve(cfg, "/tasks/"+d.tasks["main/unit"].ID()+"/1").Body.String(); strings.Contains(body, "turtles debug") {
		t.Error("the page of an attempt without a held VM offers turtles debug")
	}
	for _, tc := range []struct {
		name    string
		private bool
		want    int
	}{{"may read", false, http.StatusOK}, {"may not read", true, http.StatusNotFound}} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := d.config()
			cfg.Auth = &fakeAuth{user: "github:mallory", private: map[string]bool{ml.Repo.Name: tc.private}}
			rec := serve(cfg, "/logs/"+key)
			if rec.Code != tc.want {
				t.Errorf("GET the held VM: %d, want %d", rec.Code, tc.want)
			}
			if tc.private && strings.Contains(rec.Body.String(), "held machine") {
				t.Error("the held VM was served to someone who may not read the log")
			}
			if body := serve(cfg, page).Body.String(); tc.private && strings.Contains(body, "turtles debug") {
				t.Error("the page shows the held VM to someone who may not read the log")
			}
		})
	}
}
