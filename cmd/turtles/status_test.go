package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestAskTurtles: the status and results commands read the API through
// askTurtles; a refusal quotes the server's words, a bad answer names the URL.
func TestAskTurtles(t *testing.T) {
	tests := []struct {
		name    string
		code    int
		body    string
		want    string // the decoded context, on success
		wantErr string // a part of the error, on failure
	}{
		{name: "ok", code: 200, body: `{"tasks":[{"context":"debian-12/unit"}]}`, want: "debian-12/unit"},
		{name: "refused", code: 400, body: "bad since: 3x", wantErr: "400 Bad Request: bad since: 3x"},
		{name: "not JSON", code: 200, body: "<html>", wantErr: "/api/v1/tasks"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(tt.code)
				w.Write([]byte(tt.body))
			}))
			defer srv.Close()
			tasks, err := fetchTasks(context.Background(), srv.URL+"/api/v1/tasks")
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("fetchTasks = %v, %v; want an error containing %q", tasks, err, tt.wantErr)
				}
				return
			}
			if err != nil || len(tasks) != 1 || tasks[0].Context != tt.want {
				t.Fatalf("fetchTasks = %+v, %v; want one task %q", tasks, err, tt.want)
			}
		})
	}
	if _, err := fetchTests(context.Background(), "http://127.0.0.1:1/api/v1/tests"); err == nil || !strings.Contains(err.Error(), "ask turtles") {
		t.Errorf("fetchTests from nowhere = %v; want an ask turtles error", err)
	}
}
