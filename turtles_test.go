package turtles_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/turtles-ci/turtles"
)

func TestOutcomeOf(t *testing.T) {
	cause := errors.New("dial tcp 10.0.0.7:443: connection refused")
	vmFault := turtles.InfraFault("the VM did not boot within 5m0s", cause)
	tests := []struct {
		name      string
		err       error
		want      turtles.Outcome
		wantError string // err.Error(): the reason and the cause, for the log
	}{
		{
			name:      "infra fault",
			err:       vmFault,
			want:      turtles.Outcome{Class: turtles.Infra, ExitCode: -1, Reason: "the VM did not boot within 5m0s"},
			wantError: "the VM did not boot within 5m0s: dial tcp 10.0.0.7:443: connection refused",
		},
		{
			name:      "wrapped for context keeps the reason",
			err:       fmt.Errorf("run task octo/cat@abc:linux: %w", vmFault),
			want:      turtles.Outcome{Class: turtles.Infra, ExitCode: -1, Reason: "the VM did not boot within 5m0s"},
			wantError: "run task octo/cat@abc:linux: the VM did not boot within 5m0s: dial tcp 10.0.0.7:443: connection refused",
		},
		{
			name:      "the outermost fault says it for people",
			err:       turtles.InfraFault("the checkout could not be copied into the VM", fmt.Errorf("copy: %w", vmFault)),
			want:      turtles.Outcome{Class: turtles.Infra, ExitCode: -1, Reason: "the checkout could not be copied into the VM"},
			wantError: "the checkout could not be copied into the VM: copy: the VM did not boot within 5m0s: dial tcp 10.0.0.7:443: connection refused",
		},
		{
			name:      "failure class without a cause",
			err:       turtles.Fail(turtles.Failure, "context lint is not in .turtles.yaml", nil),
			want:      turtles.Outcome{Class: turtles.Failure, ExitCode: -1, Reason: "context lint is not in .turtles.yaml"},
			wantError: "context lint is not in .turtles.yaml",
		},
		{
			name:      "cancelled",
			err:       turtles.Fail(turtles.Cancelled, "stopped before it finished", context.Canceled),
			want:      turtles.Outcome{Class: turtles.Cancelled, ExitCode: -1, Reason: "stopped before it finished"},
			wantError: "stopped before it finished: context canceled",
		},
		{
			// The rule for errors nobody classified: ours, retried, and
			// the status does not quote the cause.
			name:      "unclassified is infra with the generic reason",
			err:       fmt.Errorf("open /var/lib/turtles/ws-1/log: %w", fs.ErrPermission),
			want:      turtles.Outcome{Class: turtles.Infra, ExitCode: -1, Reason: turtles.UnclassifiedReason},
			wantError: "open /var/lib/turtles/ws-1/log: permission denied",
		},
		{
			name:      "a fault without a reason gets the generic one",
			err:       turtles.Fail(turtles.Infra, "", cause),
			want:      turtles.Outcome{Class: turtles.Infra, ExitCode: -1, Reason: turtles.UnclassifiedReason},
			wantError: "dial tcp 10.0.0.7:443: connection refused",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, turtles.OutcomeOf(tt.err)); diff != "" {
				t.Errorf("OutcomeOf (-want +got):\n%s", diff)
			}
			if got := tt.err.Error(); got != tt.wantError {
				t.Errorf("Error() = %q, want %q", got, tt.wantError)
			}
		})
	}
}

func TestFaultChain(t *testing.T) {
	err := fmt.Errorf("check out: %w", turtles.InfraFault("the repository could not be fetched", fs.ErrNotExist))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("errors.Is(%v, fs.ErrNotExist) = false: a Fault must unwrap to its cause", err)
	}
	f, ok := turtles.FaultOf(err)
	if !ok || f.Class != turtles.Infra || f.Reason != "the repository could not be fetched" {
		t.Errorf("FaultOf(%v) = %+v, %v", err, f, ok)
	}
	if f, ok := turtles.FaultOf(errors.New("plain")); ok || f != nil {
		t.Errorf("FaultOf(plain error) = %+v, %v; want nil, false", f, ok)
	}
}
