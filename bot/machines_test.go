package bot

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/turtles-ci/turtles"
)

// TestMachinesOverLimits: a machines: list over the operator's limits is
// refused as a failure that says why, before any image or machine; one
// within them goes on (here to the image this bot lacks).
func TestMachinesOverLimits(t *testing.T) {
	dir := t.TempDir()
	r := runner{vm: VMConfig{ImagesDir: t.TempDir(), Dir: dir, CPUs: 2, MemoryMB: 1024,
		MaxMachines: 3, MaxCPUs: 6, MaxMemoryMB: 4096, BootTimeout: time.Minute, StopGrace: time.Second, QEMU: "qemu-system-x86_64"}}
	ctx := context.Background()
	three := []turtles.Machine{{Image: "no-such"}, {Image: "no-such"}, {Image: "no-such"}}
	for _, tc := range []struct {
		name     string
		machines []turtles.Machine
		want     turtles.Outcome
	}{
		{name: "too many", machines: append(three, turtles.Machine{Image: "no-such"}),
			want: turtles.Outcome{Class: turtles.Failure, ExitCode: -1, Reason: "machines: more than this bot may run: 4 machines (at most 3), 8 CPUs in all (at most 6); nothing was booted"}},
		{name: "too much memory", machines: []turtles.Machine{{Image: "no-such", MemoryMB: 4000}, {Image: "no-such"}},
			want: turtles.Outcome{Class: turtles.Failure, ExitCode: -1, Reason: "machines: more than this bot may run: 5024 MiB of memory in all (at most 4096); nothing was booted"}},
		{name: "within", machines: three,
			want: turtles.Outcome{Class: turtles.Infra, ExitCode: -1, Reason: "this bot does not have image no-such"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			o, err := r.testMachines(ctx, turtles.Task{}, workspace{}, &out, "true", time.Minute, vmTask{mode: turtles.ModeGuest, machines: tc.machines})
			if err != nil {
				o = turtles.OutcomeOf(err)
			}
			if o != tc.want {
				t.Errorf("outcome %+v, want %+v\nlog:\n%s", o, tc.want, out.String())
			}
			if o.Class == turtles.Failure && !strings.Contains(out.String(), o.Reason) {
				t.Errorf("the log does not say why:\n%s", out.String())
			}
			if left, _ := os.ReadDir(dir); len(left) != 0 {
				t.Errorf("left in the machines' directory: %v", left)
			}
		})
	}
}
