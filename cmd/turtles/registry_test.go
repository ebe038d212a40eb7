package main

import (
	"bufio"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/crane"
	"github.com/google/go-containerregistry/pkg/v1/random"

	"github.com/turtles-ci/turtles/e2e"
)

// startRegistry runs `turtles registry serve` on a free port and returns
// the address it prints once it accepts connections.
func startRegistry(t *testing.T, dir string) (*exec.Cmd, string) {
	t.Helper()
	cmd := exec.Command(e2e.Bin(t), "registry", "serve", "--listen", "127.0.0.1:0", "--dir", dir, "--data-dir", t.TempDir())
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("registry serve printed no address: %v; stderr:\n%s", err, stderr.String())
	}
	return cmd, strings.TrimSpace(line)
}

// TestRegistryServe: the command cluster up starts serves pushes at the
// address it prints, stops cleanly on SIGTERM, and a new one on the same
// directory serves what the first was given.
func TestRegistryServe(t *testing.T) {
	dir := t.TempDir()
	cmd, addr := startRegistry(t, dir)
	img, err := random.Image(1024, 2)
	if err != nil {
		t.Fatal(err)
	}
	if err := crane.Push(img, addr+"/etcd:3.5", crane.Insecure); err != nil {
		t.Fatalf("push to %s: %v", addr, err)
	}
	want, _ := img.Digest()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("registry serve after SIGTERM: %v, want exit 0", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("registry serve still running 30 s after SIGTERM")
	}

	_, addr = startRegistry(t, dir)
	got, err := crane.Digest(addr+"/etcd:3.5", crane.Insecure)
	if err != nil || got != want.String() {
		t.Errorf("after restart, etcd:3.5 = %s, %v; want %s", got, err, want)
	}
}
