package config

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/turtles-ci/turtles"
)

func TestRestrict(t *testing.T) {
	tests := []struct {
		name    string
		in      turtles.Task
		want    turtles.Task
		wantRun bool
	}{
		{name: "trusted keeps secrets and pool",
			in:   turtles.Task{Trusted: true, Pool: InternalPool, Secrets: []string{"token"}},
			want: turtles.Task{Trusted: true, Pool: InternalPool, Secrets: []string{"token"}}, wantRun: true},
		{name: "untrusted loses secrets",
			in:   turtles.Task{Pool: "public", Secrets: []string{"token"}},
			want: turtles.Task{Pool: "public"}, wantRun: true},
		{name: "untrusted never runs internal",
			in:   turtles.Task{Pool: InternalPool},
			want: turtles.Task{Pool: InternalPool}, wantRun: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, run := Restrict(tt.in)
			if diff := cmp.Diff(tt.want, got, cmp.AllowUnexported(turtles.Task{})); diff != "" || run != tt.wantRun {
				t.Errorf("Restrict = %v (-want +got):\n%s", run, diff)
			}
		})
	}
}
