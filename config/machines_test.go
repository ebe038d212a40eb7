package config

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/turtles-ci/turtles"
)

func TestMachines(t *testing.T) {
	head := "contexts:\n  - name: etcd\n    command: ./test.sh\n"
	for _, tc := range []struct {
		name, data string
		// bad is in the error; "" parses.
		bad string
	}{
		{name: "three unnamed", data: head + "    machines:\n      - image: debian-12\n      - image: debian-12\n      - image: debian-12\n"},
		{name: "named and sized", data: head + "    mode: host\n    machines:\n      - {name: server, image: debian-12, cpus: 2, memory: 2G, forward: [443]}\n      - {name: client, image: fedora}\n"},
		{name: "alias as its own name", data: head + "    machines:\n      - {name: node01, image: debian-12}\n"},
		{name: "image and machines", data: head + "    image: debian-12\n    machines:\n      - image: debian-12\n", bad: "image and machines"},
		{name: "context cpus", data: head + "    cpus: 2\n    machines:\n      - image: debian-12\n", bad: "go on each machine"},
		{name: "no image", data: head + "    machines:\n      - name: a\n", bad: `machine "a" has no image`},
		{name: "bad name", data: head + "    machines:\n      - {name: Web_1, image: debian-12}\n", bad: "bad name"},
		{name: "twice", data: head + "    machines:\n      - {name: a, image: debian-12}\n      - {name: a, image: debian-12}\n", bad: "used twice"},
		{name: "another's alias", data: head + "    machines:\n      - {name: node02, image: debian-12}\n      - {image: debian-12}\n", bad: "used twice"},
		{name: "too big", data: head + "    machines:\n      - {image: debian-12, cpus: 65}\n", bad: "cpus 65 out of range"},
		{name: "too many", data: head + "    machines:\n" + strings.Repeat("      - image: debian-12\n", MaxMachines+1), bad: "at most 16"},
		{name: "unknown key", data: head + "    machines:\n      - {image: debian-12, disk: 10G}\n", bad: `unknown key "disk"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(file, []byte(tc.data))
			if (tc.bad == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.bad)) {
				t.Errorf("Parse: %v, want %q", err, tc.bad)
			}
		})
	}
}

// TestTaskCarriesMachines: a context's machines reach its task, pinned
// images resolved, mode guest by default.
func TestTaskCarriesMachines(t *testing.T) {
	pin := "debian-12-" + strings.Repeat("a", 64)
	c, err := Parse(file, []byte("images:\n  debian-12: "+pin+"\ncontexts:\n  - name: k\n    command: make\n    machines:\n      - {name: db, image: debian-12, cpus: 2, memory: 1G}\n      - {image: debian-12, forward: [80]}\n"))
	if err != nil {
		t.Fatal(err)
	}
	plan := turtles.Task{
		Version: turtles.TaskVersion, Kind: turtles.KindPlan, Context: turtles.PlanContext,
		Repo: turtles.Repo{Name: "o/r", CloneURL: "https://github.com/o/r.git"},
		SHA:  "3f786850e387550fdab836ed7e6dc881de23001b", Pool: turtles.DefaultPool, Attempt: 1,
	}
	got := c.Contexts[0].Task(plan)
	want := []turtles.Machine{{Name: "db", Image: pin, CPUs: 2, MemoryMB: 1024}, {Image: pin, Forward: []int{80}}}
	if diff := cmp.Diff(want, got.Machines); diff != "" {
		t.Errorf("machines of the task (-want +got):\n%s", diff)
	}
	if got.Mode != turtles.ModeGuest || got.Image != "" {
		t.Errorf("mode %q image %q, want guest and none", got.Mode, got.Image)
	}
	if err := got.Validate(); err != nil {
		t.Errorf("Task is invalid: %v", err)
	}
}
