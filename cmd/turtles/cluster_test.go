package main

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	ociremote "github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/turtles-ci/turtles/e2e"
	"github.com/turtles-ci/turtles/vm"
)

// TestClusterCommands drives a real two-node cluster through the cluster
// commands: up, list with costs, ssh by node name, env for scripts,
// down, and nothing left: machines, switch, files.
func TestClusterCommands(t *testing.T) {
	data, flags := machinesWorld(t, "turtles-test-cluster-commands")
	tt := func(args ...string) (int, string) {
		t.Helper()
		return runTurtles(t, append(args, flags...)...)
	}
	registryAddr := e2e.FreeAddr(t)
	_, portS, _ := net.SplitHostPort(registryAddr)
	port, _ := strconv.Atoi(portS)
	t.Cleanup(func() { stopRegistry(data) })
	if code, out := tt("cluster", "up", "--name", "pair", "--nodes", "2", "--cpus", "1", "--memory", "512",
		"--registry", "--registry-port", strconv.Itoa(port),
		"--owner-pid", strconv.Itoa(os.Getpid())); code != 0 || !strings.Contains(out, "\npair\n") {
		t.Fatalf("cluster up: exit %d\n%s", code, out)
	}
	defer tt("cluster", "down", "pair")

	// An image pushed from the host is there for the nodes, by name.
	img, err := random.Image(1024, 1)
	if err != nil {
		t.Fatal(err)
	}
	pushed, err := name.ParseReference(registryAddr+"/turtles-test:1", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := ociremote.Write(pushed, img); err != nil {
		t.Fatalf("push to the cluster's registry: %v", err)
	}
	t.Run("registry", func(t *testing.T) {
		get := fmt.Sprintf(`exec 3<>/dev/tcp/registry/%d && printf 'GET /v2/turtles-test/manifests/1 HTTP/1.0\r\nHost: registry\r\nAccept: application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json\r\n\r\n' >&3 && head -1 <&3`, port)
		code, out := runTurtles(t, append(append([]string{"cluster", "ssh"}, flags...), "pair", "node02", "--", "bash -c "+vm.Quote(get))...)
		if code != 0 || !strings.Contains(out, " 200 ") {
			t.Errorf("node02 gets the pushed manifest from registry:%d: exit %d\n%q", port, code, out)
		}
	})

	t.Run("list", func(t *testing.T) {
		code, out := tt("cluster", "list")
		squeezed := regexp.MustCompile(` +`).ReplaceAllString(out, " ")
		for _, want := range []string{"pair node01 node01 10.77.0.11", "pair node02 node02 10.77.0.12", "1 512 MiB", "2 1024 MiB",
			"pair (registry) registry:" + portS + " " + registryAddr} {
			if code != 0 || !strings.Contains(squeezed, want) {
				t.Errorf("cluster list lacks %q: exit %d\n%s", want, code, out)
			}
		}
	})
	t.Run("ssh by name", func(t *testing.T) {
		code, out := runTurtles(t, append(append([]string{"cluster", "ssh"}, flags...), "pair", "node02", "--", "hostname; getent hosts node01")...)
		if code != 0 || out != "node02\n10.77.0.11      node01\n" {
			t.Errorf("cluster ssh: exit %d\n%q", code, out)
		}
	})
	t.Run("env", func(t *testing.T) {
		code, out := tt("cluster", "env", "pair")
		for _, want := range []string{"export TURTLES_MACHINES='node01 node02'\n", "export TURTLES_MACHINE_NODE02_ADDR='10.77.0.12'\n", "export TURTLES_VM_SSH_KEY=",
			"export TURTLES_REGISTRY='" + registryAddr + "'\n", fmt.Sprintf("export TURTLES_REGISTRY_GUEST='registry:%d'\n", port)} {
			if code != 0 || !strings.Contains(out, want) {
				t.Errorf("cluster env lacks %q: exit %d\n%s", want, code, out)
			}
		}
	})
	t.Run("down", func(t *testing.T) {
		clusterDown(t, tt, data, "pair")
		if code, out := runTurtles(t, append(append([]string{"cluster", "ssh"}, flags...), "pair", "node01", "--", "true")...); code == 0 || !strings.Contains(out, "no cluster pair") {
			t.Errorf("ssh after down: exit %d\n%s", code, out)
		}
		// The registry and what was pushed outlive the cluster.
		if _, err := ociremote.Image(pushed); err != nil {
			t.Errorf("the pushed image after cluster down: %v", err)
		}
	})
}

// clusterDown takes cluster name of data down with tt (runTurtles with
// its flags) and checks that nothing is left: machines, switch, files.
func clusterDown(t *testing.T, tt func(...string) (int, string), data, name string) {
	t.Helper()
	if code, out := tt("cluster", "down", name); code != 0 {
		t.Fatalf("cluster down: exit %d\n%s", code, out)
	}
	for _, d := range []string{"vms", "clusters"} {
		if left, _ := os.ReadDir(filepath.Join(data, d)); len(left) != 0 {
			t.Errorf("left in %s: %v", d, left)
		}
	}
	if qemuRunning(data) {
		t.Error("a qemu of the cluster still runs")
	}
	if switchRunning(data) {
		t.Error("the cluster's switch still runs")
	}
}

// stopRegistry stops the registry a cluster of data started.
func stopRegistry(data string) {
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err == nil && strings.Contains(string(b), "registry\x00serve\x00") && strings.Contains(string(b), data) {
			if pid, err := strconv.Atoi(filepath.Base(filepath.Dir(p))); err == nil {
				syscall.Kill(pid, syscall.SIGTERM)
			}
		}
	}
}

// switchRunning reports whether a cluster switch of data runs.
func switchRunning(data string) bool {
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err == nil && strings.Contains(string(b), "cluster\x00switch\x00") && strings.Contains(string(b), data) {
			st, _ := os.ReadFile(strings.TrimSuffix(p, "cmdline") + "stat")
			if i := strings.LastIndexByte(string(st), ')'); i > 0 && strings.HasPrefix(strings.TrimSpace(string(st[i+1:])), "Z") {
				continue
			}
			return true
		}
	}
	return false
}
