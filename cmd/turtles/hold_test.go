package main

import (
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/turtles-ci/turtles"
	"github.com/turtles-ci/turtles/e2e"
	"github.com/turtles-ci/turtles/forge/github/githubtest"
	"github.com/turtles-ci/turtles/store"
)

// holdConfig: a failed test that leaves a file and a process behind, a
// failed one with a secret, the same whose context opts in, one that
// passes, and one whose machine is larger than the server's --hold-limit.
const holdConfig = `contexts:
  - name: held
    image: debian-12
    hold: on-failure
    command: |
      echo written-by-the-test > /root/evidence
      sleep 1000 >/dev/null 2>&1 &
      echo $! > /root/sleep.pid
      echo failing on purpose; exit 3
  - name: secret
    image: debian-12
    hold: on-failure
    secrets: [DEPLOY_TOKEN]
    command: echo failing with a secret; exit 4
  - name: optin
    image: debian-12
    hold: on-failure-with-secrets
    secrets: [DEPLOY_TOKEN]
    command: echo failing with a secret, held anyway; exit 6
  - name: passes
    image: debian-12
    hold: on-failure
    command: echo passing
  - name: large
    image: debian-12
    hold: on-failure
    command: head -c 250M /dev/urandom > /root/big; echo failing large; exit 5
`

// TestHoldAndDebug runs the contexts of holdConfig through turtles serve
// with real Debian VMs: only the failed ones within the limit, without
// secrets or opted in, are held, each log says why or why not, and turtles debug
// resumes the held machine with the test's file and its sleep still
// there. Nothing of any machine is left behind on either side.
func TestHoldAndDebug(t *testing.T) {
	images := filepath.Dir(debianTestImage(t))
	gh := githubtest.NewServer(t, e2e.Token)
	pushAccess(gh)
	repo := t.TempDir()
	sha := e2e.GitRepo(t, repo, map[string]string{".turtles.yaml": holdConfig})
	secrets := t.TempDir()
	if err := os.WriteFile(filepath.Join(secrets, "DEPLOY_TOKEN"), []byte("s3cr3t-value\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	data := t.TempDir()
	s := e2e.Serve(t, gh, data, "--images-dir", images, "--secrets-dir", secrets, "--hold-limit", "200MiB")
	body := prPayload(repo, sha)
	if code, out := s.Webhook("pull_request", "d-1", body, e2e.Sign(body)); code/100 != 2 {
		t.Fatalf("webhook: %d %s", code, out)
	}
	final := e2e.WaitFinal(t, gh, "octo/hello", sha, 20*time.Minute, "held", "secret", "optin", "passes", "large")
	for c, want := range map[string]string{"held": "failure", "secret": "failure", "optin": "failure", "passes": "success", "large": "failure"} {
		if final[c].State != want {
			t.Errorf("%s: %+v, want %s", c, final[c], want)
		}
	}
	prefix := func(c string) string {
		return store.AttemptPrefix(turtles.Task{Repo: turtles.Repo{Name: "octo/hello"}, SHA: sha, Context: c, Attempt: 1})
	}
	for _, tc := range []struct {
		context string
		held    bool
		log     string
	}{
		{"held", true, "the failed VM is held: resume it with   turtles debug URL   where URL is this attempt's page (…" +
			strings.TrimPrefix(final["held"].TargetURL, s.URL) + ")"},
		{"secret", false, "not holding the VM: this task was given secrets"},
		{"optin", true, "held the VM in"},
		{"passes", false, ""},
		{"large", false, "not holding the VM: the held machine is over the limit of 200 MiB"},
	} {
		resp, _ := s.Get("/logs/" + prefix(tc.context) + store.HeldName)
		resp.Body.Close()
		if held := resp.StatusCode == 200; held != tc.held {
			t.Errorf("%s: held VM served: %d, want held %v", tc.context, resp.StatusCode, tc.held)
		}
		_, log := s.Get("/logs/" + prefix(tc.context) + store.LogName)
		if tc.log != "" && !strings.Contains(string(log), tc.log) {
			t.Errorf("%s: the log lacks %q:\n%s", tc.context, tc.log, log)
		}
		if tc.context == "passes" && strings.Contains(string(log), "holding") {
			t.Errorf("passes: the log of a passing task speaks of holding:\n%s", log)
		}
	}
	_, page := s.Get(strings.TrimPrefix(final["held"].TargetURL, s.URL))
	if want := "turtles debug " + final["held"].TargetURL; !strings.Contains(string(page), want) {
		t.Errorf("the held attempt's page lacks %q", want)
	}
	// The bot's side: no machine, qemu, overlay or held copy but the
	// one in the store.
	if qemuRunning(data) {
		t.Error("a qemu of the server still runs")
	}
	if left, _ := os.ReadDir(filepath.Join(data, "work", "vms")); len(left) != 0 {
		t.Errorf("machines left in the bot's directory: %v", left)
	}
	var copies []string
	filepath.WalkDir(data, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && !strings.Contains(p, "/.turtles-store/") && (d.Name() == store.HeldName || strings.HasSuffix(d.Name(), ".qcow2")) {
			copies = append(copies, p)
		}
		return nil
	})
	if len(copies) != 2 || !strings.Contains(strings.Join(copies, " "), prefix("held")) || !strings.Contains(strings.Join(copies, " "), prefix("optin")) {
		t.Errorf("files of machines in the server's data directory: %v, want only the two held VMs in the store", copies)
	}

	debugData := t.TempDir()
	began := time.Now()
	code, out := runTurtles(t, "debug", final["held"].TargetURL, "--data-dir", debugData, "--images-dir", images,
		"--", `cat /root/evidence; ps -o args= -p "$(cat /root/sleep.pid)"; exit 7`)
	t.Logf("turtles debug took %s:\n%s", time.Since(began).Round(time.Millisecond), out)
	if code != 7 || !strings.Contains(out, "written-by-the-test\nsleep 1000\n") {
		t.Errorf("turtles debug: exit %d, want 7 with the test's file and its sleep in:\n%s", code, out)
	}
	if qemuRunning(debugData) {
		t.Error("a qemu of turtles debug still runs after it exited")
	}
	if left, _ := os.ReadDir(filepath.Join(debugData, "vms")); len(left) != 0 {
		t.Errorf("turtles debug left machines behind: %v", left)
	}

	// The shell, as a person gets it (without a terminal here: ssh reads
	// the commands from stdin), in the opt-in task's machine.
	shell := exec.Command(e2e.Bin(t), "debug", final["optin"].TargetURL, "--data-dir", debugData, "--images-dir", images)
	shell.Stdin = strings.NewReader("echo in the shell of $(hostname)\nexit 9\n")
	b, _ := shell.CombinedOutput()
	if shell.ProcessState.ExitCode() != 9 || !strings.Contains(string(b), "in the shell of ") {
		t.Errorf("turtles debug's shell: exit %d, want 9 after the echo:\n%s", shell.ProcessState.ExitCode(), b)
	}
	if qemuRunning(debugData) {
		t.Error("a qemu of turtles debug still runs after its shell exited")
	}
	if left, _ := os.ReadDir(filepath.Join(debugData, "vms")); len(left) != 0 {
		t.Errorf("turtles debug's shell left machines behind: %v", left)
	}
}
