package main

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/turtles-ci/turtles/e2e"
)

// TestDemo runs `make demo`'s script (scripts/demo.sh) as the README
// promises it works: a fresh serve on embedded defaults, a signed webhook,
// every context passing. Only the Debian VM context is left out (the VM
// tests boot that image); the webhook, the trust rules it meets and the
// wait for statuses are the demo's own.
func TestDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: runs turtles serve and its tasks")
	}
	_, port, err := net.SplitHostPort(e2e.FreeAddr(t))
	if err != nil {
		t.Fatal(err)
	}
	script, err := filepath.Abs("../../scripts/demo.sh")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("bash", script)
	cmd.Env = append(os.Environ(), "DEMO_BIN="+e2e.Bin(t), "DEMO_DIR="+t.TempDir(), "DEMO_NO_VM=1", "DEMO_PORT="+port)
	cmd.Stdin = nil // not a terminal: the script does not wait for Enter
	// Its own process group, so that a timeout takes serve along.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	done := make(chan struct{})
	var out []byte
	go func() { out, err = cmd.CombinedOutput(); close(done) }()
	select {
	case <-done:
	case <-time.After(3 * time.Minute):
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
		t.Fatalf("demo still running after 3 minutes:\n%s", out)
	}
	if err != nil || !strings.Contains(string(out), "all contexts passed") {
		t.Fatalf("demo: %v\n%s", err, out)
	}
}
