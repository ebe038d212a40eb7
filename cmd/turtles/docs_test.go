package main

// TestDocsFromZero runs the "From zero" section of docs/distributed.md as
// written, so that a newcomer's first steps cannot rot: its shell blocks
// marked "# from-zero", in one bash, against a private RabbitMQ node, the
// real binary and a fake GitHub. Only the section's settings block (paths,
// addresses, the broker's host) is not run: the test exports the same
// names with its own values, and fails if the two lists differ. Three
// commands of the machine are stood in for: sudo (the test is root
// already), rabbitmqctl (the private node's, with its environment) and
// turtles (this build). The GitHub token the section asks the reader to
// write is the fake's, and the reporter finds the fake through
// TURTLES_GITHUB_API in the environment.

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/turtles-ci/turtles/e2e"
	"github.com/turtles-ci/turtles/forge/github/githubtest"
	"github.com/turtles-ci/turtles/queue/amqp/amqptest"
	"github.com/turtles-ci/turtles/state"
)

const docsFile = "../../docs/distributed.md"

// fromZero returns the names the section's settings block exports and
// the commands of its other marked blocks, in order.
func fromZero(t *testing.T) (settings []string, blocks []string) {
	t.Helper()
	b, err := os.ReadFile(docsFile)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	start := strings.Index(doc, "\n## From zero\n")
	if start < 0 {
		t.Fatalf("%s has no \"## From zero\" section", docsFile)
	}
	section := doc[start+1:]
	if end := strings.Index(section, "\n## "); end >= 0 {
		section = section[:end]
	}
	export := regexp.MustCompile(`^export ([A-Z_]+)=`)
	var block []string
	in := false
	sc := bufio.NewScanner(strings.NewReader(section))
	for sc.Scan() {
		line := sc.Text()
		switch {
		case !in && line == "```sh":
			in, block = true, nil
		case in && line == "```":
			in = false
			switch {
			case len(block) > 0 && block[0] == "# from-zero: settings":
				for _, l := range block {
					if m := export.FindStringSubmatch(l); m != nil {
						settings = append(settings, m[1])
					}
				}
			case len(block) > 0 && block[0] == "# from-zero":
				blocks = append(blocks, strings.Join(block, "\n"))
			}
		case in:
			block = append(block, line)
		}
	}
	if len(settings) == 0 || len(blocks) == 0 {
		t.Fatalf("%s: \"From zero\" has %d settings and %d blocks marked # from-zero", docsFile, len(settings), len(blocks))
	}
	return settings, blocks
}

func TestDocsFromZero(t *testing.T) {
	if testing.Short() {
		t.Skip("starts RabbitMQ and four turtles processes")
	}
	settingNames, blocks := fromZero(t)
	broker, err := amqptest.Start(amqptest.Options{Log: t.Logf})
	if err != nil {
		t.Fatalf("start broker: %v", err)
	}
	t.Cleanup(func() { broker.Stop() })
	gh := githubtest.NewServer(t, e2e.Token)
	brokerURL, err := url.Parse(broker.URL)
	if err != nil {
		t.Fatal(err)
	}

	home := t.TempDir()
	hookAddr, repAddr := e2e.FreeAddr(t), e2e.FreeAddr(t)
	publicURL := "http://" + repAddr
	settings := map[string]string{
		"TURTLES_HOME":  home,
		"MQ_HOST":       brokerURL.Host,
		"HOOK_ADDR":     hookAddr,
		"REPORTER_ADDR": repAddr,
		"PUBLIC_URL":    publicURL,
	}
	var ours []string
	for k := range settings {
		ours = append(ours, k)
	}
	slices.Sort(ours)
	slices.Sort(settingNames)
	if diff := cmp.Diff(settingNames, ours); diff != "" {
		t.Fatalf("the section's settings and the test's differ (-docs +test):\n%s", diff)
	}

	// The stand-ins.
	bin := t.TempDir()
	var ctlEnv strings.Builder
	for _, kv := range broker.Env() {
		if strings.HasPrefix(kv, "RABBITMQ_") || strings.HasPrefix(kv, "ERL_") || strings.HasPrefix(kv, "HOME=") {
			fmt.Fprintf(&ctlEnv, "export '%s'\n", kv)
		}
	}
	for name, body := range map[string]string{
		"sudo":        "#!/bin/sh\nexec \"$@\"\n",
		"rabbitmqctl": "#!/bin/sh\n" + ctlEnv.String() + "exec " + amqptest.CtlBin + " \"$@\"\n",
	} {
		if err := os.WriteFile(filepath.Join(bin, name), []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(e2e.Bin(t), filepath.Join(bin, "turtles")); err != nil {
		t.Fatal(err)
	}
	// What the section asks the reader to write by hand.
	if err := os.MkdirAll(filepath.Join(home, "secrets"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(home, "secrets", "github-token"), []byte(e2e.Token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	// Output goes to a file: the processes started in the background keep
	// the script's stdout open, and a pipe would wait for them.
	outPath := filepath.Join(t.TempDir(), "out")
	out, err := os.Create(outPath)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	script := "set -euo pipefail\n" + strings.Join(blocks, "\n\n") + "\n"
	cmd := exec.Command("bash", "-c", script)
	cmd.Dir = home
	cmd.Env = append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"),
		// The fake GitHub: an environment variable, so the section's
		// commands stay as written.
		"TURTLES_GITHUB_API="+gh.URL+"/")
	for k, v := range settings {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// The section leaves its processes running; they are in the script's
	// process group.
	t.Cleanup(func() { syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) })
	logs := func() string {
		var b strings.Builder
		o, _ := os.ReadFile(outPath)
		fmt.Fprintf(&b, "== script output\n%s", o)
		for _, p := range []string{"hook", "bot1", "bot2", "reporter"} {
			l, _ := os.ReadFile(filepath.Join(home, p, "log"))
			fmt.Fprintf(&b, "== %s log (end)\n%s\n", p, tail(string(l), 3000))
		}
		return b.String()
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err = <-done:
	case <-time.After(150 * time.Second):
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
		t.Fatalf("the section's commands did not finish in 150s\n%s", logs())
	}
	if err != nil {
		t.Fatalf("the section's commands failed: %v\n%s", err, logs())
	}
	output, _ := os.ReadFile(outPath)
	t.Logf("the section's output:\n%s", output)

	// What the section says: both contexts passed, each line of `turtles
	// status` ends with its log page on the public URL, and the statuses
	// carry the same links.
	shaOut, err := exec.Command("git", "-C", filepath.Join(home, "hello"), "rev-parse", "HEAD").Output()
	if err != nil {
		t.Fatal(err)
	}
	sha := strings.TrimSpace(string(shaOut))
	for _, c := range []string{"hello", "world"} {
		re := regexp.MustCompile(`(?m)^` + c + `\s+finished\s+success\s.*\s` + regexp.QuoteMeta(publicURL) + `/tasks/\S+/1$`)
		if !re.Match(output) {
			t.Errorf("turtles status shows no line for %s that passed and links its page on %s:\n%s", c, publicURL, output)
		}
		st := e2e.WaitFinal(t, gh, "me/hello", sha, 30*time.Second, c)[c]
		if st.State != "success" || !strings.HasPrefix(st.TargetURL, publicURL+"/tasks/") {
			t.Errorf("status of %s: %s linking %q, want success linking %s/tasks/...", c, st.State, st.TargetURL, publicURL)
		}
	}

	// The API agrees, and names the two bots the section started.
	resp, err := http.Get("http://" + repAddr + "/api/v1/tasks?sha=" + sha)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var answer struct{ Tasks []state.Task }
	if err := json.NewDecoder(resp.Body).Decode(&answer); err != nil {
		t.Fatalf("decode API answer: %v", err)
	}
	tasks := answer.Tasks
	host, _ := os.Hostname()
	for _, tk := range tasks {
		if !strings.HasPrefix(tk.LogURL, publicURL+"/tasks/"+tk.ID+"/") {
			t.Errorf("API: task %s (%s) links %q, want its page under %s", tk.ID, tk.Context, tk.LogURL, publicURL)
		}
		for _, a := range tk.Attempts {
			if a.Bot != host+"-1" && a.Bot != host+"-2" {
				t.Errorf("API: %s attempt %d ran on %q, not on a bot of the section", tk.Context, a.Number, a.Bot)
			}
		}
	}
	if len(tasks) != 3 {
		t.Errorf("API: %d tasks of %s, want the plan, hello and world", len(tasks), sha)
	}
	if t.Failed() {
		t.Log(logs())
	}
}
