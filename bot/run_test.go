package bot

import (
	"bytes"
	"context"
	"os"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/turtles-ci/turtles"
)

// TestRefuseOnBot: untrusted work outside a VM fails where the pool takes
// none (no bot of it would run it), and is infra on a bot of a pool that
// does but cannot isolate it (another bot may).
func TestRefuseOnBot(t *testing.T) {
	untrusted := turtles.Task{Context: "unit", Command: "echo should not run"}
	trusted := untrusted
	trusted.Trusted = true
	tests := []struct {
		name    string
		r       runner
		task    turtles.Task
		want    turtles.Outcome // of the attempt: its own, or its error's
		wantErr bool
	}{
		{
			name: "pool takes no untrusted host work",
			r:    runner{},
			task: untrusted,
			want: turtles.Outcome{Class: turtles.Failure, ExitCode: -1,
				Reason: "untrusted work runs only in guest-mode VMs (an image, mode guest); this pool takes no host-mode or image-less work from untrusted authors"},
		},
		{
			name:    "bot cannot isolate",
			r:       runner{untrustedHost: true},
			task:    untrusted,
			want:    turtles.Outcome{Class: turtles.Infra, ExitCode: -1, Reason: "this bot cannot isolate untrusted work on the host (no bubblewrap, or no user namespaces)"},
			wantErr: true,
		},
		{
			name: "trusted runs",
			r:    runner{},
			task: trusted,
			want: turtles.Outcome{Class: turtles.Success},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			ws, err := newWorkspace(dir)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.Mkdir(ws.src, 0o755); err != nil { // the checkout
				t.Fatal(err)
			}
			tt.r.killGrace = time.Second
			var out bytes.Buffer
			got, err := tt.r.test(context.Background(), tt.task, ws, &out)
			if (err != nil) != tt.wantErr {
				t.Fatalf("test = %+v, %v; want an error: %v", got, err, tt.wantErr)
			}
			if err != nil {
				if got != (turtles.Outcome{}) {
					t.Errorf("test returned outcome %+v with its error; want none", got)
				}
				got = turtles.OutcomeOf(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("outcome (-want +got):\n%s\nlog:\n%s", diff, out.String())
			}
		})
	}
}
