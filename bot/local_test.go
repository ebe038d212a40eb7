package bot

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/turtles-ci/turtles"
)

func TestRunLocal(t *testing.T) {
	repo, sha := newRepo(t, map[string]string{".turtles.yaml": testConfig + `  - name: slow
    command: echo slow; sleep 60
  - name: env
    command: echo "sha=$TURTLES_SHA home=$HOME"
  - name: secret
    command: echo "len=${#DEPLOY_TOKEN}"
    secrets: [DEPLOY_TOKEN]
`})
	secrets := secretsDir(t)
	// Uncommitted changes are not what CI runs, so they are not run here.
	os.WriteFile(filepath.Join(repo, ".turtles.yaml"), []byte("garbage: ["), 0o644)
	tests := []struct {
		name    string
		opts    LocalOptions
		want    turtles.Outcome
		wantErr string
		wantLog []string
	}{
		{
			name:    "success",
			opts:    LocalOptions{Context: "ok"},
			want:    turtles.Outcome{Class: turtles.Success},
			wantLog: []string{"turtles: checking out file://" + repo + " " + sha, "turtles: running: echo hello from $TURTLES_CONTEXT", "hello from ok\n", "turtles: exit status 0"},
		},
		{
			name:    "failure",
			opts:    LocalOptions{Context: "fail", Rev: "main"},
			want:    turtles.Outcome{Class: turtles.Failure, ExitCode: 3, Reason: "exit status 3"},
			wantLog: []string{"failing\n"},
		},
		{
			name:    "same environment as a bot",
			opts:    LocalOptions{Context: "env"},
			want:    turtles.Outcome{Class: turtles.Success},
			wantLog: []string{"sha=" + sha + " home=/"},
		},
		{
			name:    "timeout override",
			opts:    LocalOptions{Context: "slow", Timeout: 300 * time.Millisecond, KillGrace: 100 * time.Millisecond},
			want:    turtles.Outcome{Class: turtles.Failure, ExitCode: -1, Reason: "timed out after 300ms"},
			wantLog: []string{"slow\n", "timed out after 300ms"},
		},
		{
			name:    "unknown context",
			opts:    LocalOptions{Context: "nope"},
			want:    turtles.Outcome{Class: turtles.Failure, ExitCode: -1, Reason: "context nope is not in .turtles.yaml"},
			wantLog: []string{"context nope is not in .turtles.yaml"},
		},
		{
			name:    "secrets from --secrets-dir",
			opts:    LocalOptions{Context: "secret", SecretsDir: secrets},
			want:    turtles.Outcome{Class: turtles.Success},
			wantLog: []string{"len=20\n"},
		},
		{
			name:    "no secrets without --secrets-dir",
			opts:    LocalOptions{Context: "secret"},
			want:    turtles.Outcome{Class: turtles.Success},
			wantLog: []string{"running without the secrets secret names (DEPLOY_TOKEN)", "len=0\n"},
		},
		{name: "unknown rev", opts: LocalOptions{Context: "ok", Rev: "no-such-branch"}, wantErr: "no-such-branch"},
		{name: "no context", opts: LocalOptions{}, wantErr: "no context"},
		{name: "no VM settings", opts: LocalOptions{Context: "ok", VM: VMConfig{ImagesDir: "images"}}, wantErr: "VM: no machines directory"},
		{name: "no VM boot timeout", opts: LocalOptions{Context: "ok", VM: VMConfig{Dir: "vms", CPUs: 1, MemoryMB: 512, StopGrace: time.Second, QEMU: "qemu"}}, wantErr: "VM.BootTimeout is 0s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			workDir := t.TempDir()
			tt.opts.Dir, tt.opts.Out, tt.opts.WorkDir = repo, &out, workDir
			if reflect.DeepEqual(tt.opts.VM, VMConfig{}) {
				tt.opts.VM = testVM("", workDir)
			}
			if tt.opts.Rev == "" {
				tt.opts.Rev = "HEAD"
			}
			if tt.opts.KillGrace == 0 {
				tt.opts.KillGrace = 10 * time.Second
			}
			got, err := RunLocal(context.Background(), tt.opts)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("RunLocal error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("RunLocal: %v\n%s", err, out.String())
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("outcome (-want +got):\n%s\nlog:\n%s", diff, out.String())
			}
			for _, w := range tt.wantLog {
				if !strings.Contains(out.String(), w) {
					t.Errorf("log does not contain %q:\n%s", w, out.String())
				}
			}
			if left, _ := os.ReadDir(workDir); len(left) != 0 {
				t.Errorf("RunLocal left %d entries in its work directory", len(left))
			}
		})
	}
}
