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
		{name: "cluster", data: head + "    mode: host\n    cluster: {provider: kubernetes, nodes: 2, memory: 3G}\n"},
		{name: "cluster and machines", data: head + "    cluster: {provider: kubernetes, nodes: 2}\n    machines:\n      - image: debian-12\n", bad: "no image, machines"},
		{name: "cluster and image", data: head + "    image: debian-12\n    cluster: {provider: kubernetes, nodes: 2}\n", bad: "no image, machines"},
		{name: "cluster without nodes", data: head + "    cluster: {provider: kubernetes}\n", bad: "nodes 0 out of range"},
		{name: "cluster too many nodes", data: head + "    cluster: {provider: kubernetes, nodes: 17}\n", bad: "nodes 17 out of range"},
		{name: "cluster bad provider", data: head + "    cluster: {provider: ../k8s, nodes: 2}\n", bad: `provider "../k8s"`},
		{name: "cluster unknown key", data: head + "    cluster: {provider: kubernetes, nodes: 2, version: 1.30}\n", bad: `unknown key "version"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(file, []byte(tc.data))
			if (tc.bad == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.bad)) {
				t.Errorf("Parse: %v, want %q", err, tc.bad)
			}
		})
	}
}

// TestTaskCarriesCluster: a context's cluster reaches its task as its
// provider and that many machines of the cluster image, sized alike.
func TestTaskCarriesCluster(t *testing.T) {
	c, err := Parse(file, []byte("contexts:\n  - name: k8s\n    mode: host\n    command: ./e2e.sh\n    cluster: {provider: kubernetes, nodes: 2, cpus: 3}\n"))
	if err != nil {
		t.Fatal(err)
	}
	x, _ := c.Find("k8s")
	got := x.Task(turtles.Task{Version: turtles.TaskVersion, Kind: turtles.KindTest, Pool: "default", Repo: turtles.Repo{Name: "o/r", CloneURL: "https://example.com/o/r.git"}, SHA: strings.Repeat("a", 40), Context: "k8s", Attempt: 1})
	want := []turtles.Machine{{Image: ClusterImage, CPUs: 3}, {Image: ClusterImage, CPUs: 3}}
	if diff := cmp.Diff(want, got.Machines); diff != "" || got.Provider != "kubernetes" || got.Mode != turtles.ModeHost {
		t.Errorf("task machines (-want +got):\n%s\nprovider %q, mode %q", diff, got.Provider, got.Mode)
	}
	if err := got.Validate(); err != nil {
		t.Errorf("the task does not validate: %v", err)
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
