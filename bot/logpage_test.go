package bot

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/websocket"

	"github.com/turtles-ci/turtles"
	"github.com/turtles-ci/turtles/store"
)

var screenshot = flag.Bool("screenshot", false, "write docs/log-page.png from the finished log page")

// chromium is a headless browser driven over the DevTools protocol.
type chromium struct {
	ws  *websocket.Conn
	id  int
	cmd *exec.Cmd
}

// startChromium runs Debian's chromium (installing it when missing and
// root) with one page, and connects to that page.
func startChromium(t *testing.T) *chromium {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		if os.Getuid() != 0 {
			t.Fatal("chromium is missing: run scripts/deps.sh")
		}
		for _, args := range [][]string{{"update", "-qq"}, {"install", "-y", "-qq", "chromium"}} {
			cmd := exec.Command("apt-get", args...)
			cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("apt-get %v: %v\n%s", args, err, out)
			}
		}
		if path, err = exec.LookPath("chromium"); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	cmd := exec.Command(path, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
		"--disable-component-update", "--disable-sync", "--no-first-run", "--user-data-dir="+dir,
		"--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0", "--remote-allow-origins=*", "--window-size=1280,1000", "about:blank")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	var port string
	for i := 0; ; i++ {
		b, err := os.ReadFile(filepath.Join(dir, "DevToolsActivePort"))
		if err == nil && strings.Contains(string(b), "\n") {
			port = strings.SplitN(string(b), "\n", 2)[0]
			break
		}
		if i > 300 {
			t.Fatalf("chromium did not open its DevTools port:\n%s", stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	resp, err := http.Get("http://127.0.0.1:" + port + "/json/list")
	if err != nil {
		t.Fatal(err)
	}
	var targets []struct{ Type, WebSocketDebuggerURL string }
	json.NewDecoder(resp.Body).Decode(&targets)
	resp.Body.Close()
	for _, tg := range targets {
		if tg.Type == "page" {
			ws, err := websocket.Dial(tg.WebSocketDebuggerURL, "", "http://127.0.0.1/")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { ws.Close() })
			return &chromium{ws: ws, cmd: cmd}
		}
	}
	t.Fatalf("chromium has no page target: %+v", targets)
	return nil
}

// call sends one DevTools command and returns its result, skipping events.
func (c *chromium) call(t *testing.T, method string, params any) json.RawMessage {
	t.Helper()
	c.id++
	if err := websocket.JSON.Send(c.ws, map[string]any{"id": c.id, "method": method, "params": params}); err != nil {
		t.Fatal(err)
	}
	c.ws.SetReadDeadline(time.Now().Add(30 * time.Second))
	for {
		var msg struct {
			ID     int
			Result json.RawMessage
			Error  *struct{ Message string }
		}
		if err := websocket.JSON.Receive(c.ws, &msg); err != nil {
			t.Fatalf("%s: %v", method, err)
		}
		if msg.ID != c.id {
			continue
		}
		if msg.Error != nil {
			t.Fatalf("%s: %s", method, msg.Error.Message)
		}
		return msg.Result
	}
}

// eval evaluates a JavaScript expression in the page and decodes its value.
func (c *chromium) eval(t *testing.T, expr string, v any) {
	t.Helper()
	raw := c.call(t, "Runtime.evaluate", map[string]any{"expression": expr, "returnByValue": true})
	var r struct {
		Result struct{ Value json.RawMessage }
	}
	json.Unmarshal(raw, &r)
	if err := json.Unmarshal(r.Result.Value, v); err != nil {
		t.Fatalf("eval %s: %s: %v", expr, r.Result.Value, err)
	}
}

// waitFor polls a boolean expression until it holds.
func (c *chromium) waitFor(t *testing.T, what, expr string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		raw := c.call(t, "Runtime.evaluate", map[string]any{"expression": "!!(" + expr + ")", "returnByValue": true})
		var r struct{ Result struct{ Value bool } }
		json.Unmarshal(raw, &r) // while a page loads there may be no value
		if r.Result.Value {
			return
		}
		if time.Now().After(deadline) {
			var dom string
			c.eval(t, "document.body.innerText.slice(0, 3000)", &dom)
			t.Fatalf("page never showed %s (%s); page text:\n%s", what, expr, dom)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestLogPageInChromium follows a live attempt's log on the static page
// served from a plain file server over the store (as S3 serves it), while
// the real live log uploads chunks; then checks the finished page lists the
// failures with links to their log lines and the artifacts.
func TestLogPageInChromium(t *testing.T) {
	old := chunkEvery
	chunkEvery = 100 * time.Millisecond
	t.Cleanup(func() { chunkEvery = old })
	d, err := store.NewDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	st := putOnly{d} // chunks, as on S3
	srv := httptest.NewServer(http.FileServer(http.Dir(d.Root())))
	defer srv.Close()
	task := turtles.Task{Repo: turtles.Repo{Name: "cockpit/app"}, SHA: strings.Repeat("ab", 20), Context: "debian-12/unit", Attempt: 1}
	prefix := store.AttemptPrefix(task)
	l, err := newLiveLog(st, prefix+store.LogName, filepath.Join(t.TempDir(), "log"), nil)
	if err != nil {
		t.Fatal(err)
	}
	c := startChromium(t)
	c.call(t, "Page.enable", map[string]any{})

	fmt.Fprintf(l, "bot bot-1: test attempt 1 of cockpit/app\nrunning: make check\nTAP version 13\n1..4\n\x1b[32mok 1 - boots\x1b[0m\n")
	c.call(t, "Page.navigate", map[string]any{"url": srv.URL + "/" + prefix + "index.html?poll=150"})
	c.waitFor(t, "the first lines", "Number(document.body.dataset.lines) >= 5")
	var n1 int
	c.eval(t, "Number(document.body.dataset.lines)", &n1)
	for i := 0; i < 20; i++ {
		fmt.Fprintf(l, "progress %d\n", i)
	}
	fmt.Fprintf(l, "\x1b[1;31mnot ok 2 - logs in\x1b[0m\n  ---\n  message: wrong password\n  ...\nok 3 - logs out # SKIP no session\n")
	c.waitFor(t, "the log grow", fmt.Sprintf("Number(document.body.dataset.lines) >= %d", n1+24))
	c.waitFor(t, "a coloured span", `document.querySelector('#log span[style*="color"]')`)
	c.waitFor(t, "the live test list", `document.getElementById("tests").innerText.includes("(so far)")`)
	c.waitFor(t, "the live failure", `document.querySelector('#failures a[href="#L26"]')`)
	var state string
	c.eval(t, "document.body.dataset.state", &state)
	if state != "live" {
		t.Errorf("page state %q while the task runs, want live", state)
	}

	// The end: the bot stores result.json, then the whole log.
	fmt.Fprintf(l, "not ok 4 - saves settings\noutcome: failure (exit status 1)\n")
	if err := st.Put(context.Background(), prefix+"artifacts/journal.txt", strings.NewReader("journal"), "text/plain"); err != nil {
		t.Fatal(err)
	}
	res := turtles.Result{Task: task, Outcome: turtles.Outcome{Class: turtles.Failure, ExitCode: 1, Reason: "exit status 1"},
		Triage: []turtles.TriageMatch{{Pattern: "5.yaml", Issue: "https://x.example/5", Title: "passwords expire", Action: "known-issue",
			File: "log", Line: 28, Lines: []string{"  message: wrong password"}}},
		Tests: l.tests.results(), Artifacts: []turtles.Artifact{{Name: "artifacts/journal.txt", Size: 7, ContentType: "text/plain"}}}
	b, _ := json.Marshal(res)
	if err := st.Put(context.Background(), prefix+store.ResultName, bytes.NewReader(b), "application/json"); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	c.waitFor(t, "the end", `document.body.dataset.state === "done"`)
	checkFinished := func() {
		t.Helper()
		var failures []string
		c.eval(t, `Array.from(document.querySelectorAll("#failures a")).map(a => a.textContent + " " + a.getAttribute("href"))`, &failures)
		if want := []string{"logs in #L26", "saves settings #L31"}; fmt.Sprint(failures) != fmt.Sprint(want) {
			t.Errorf("failures listed %q, want %q", failures, want)
		}
		var lines int
		var status, arts string
		c.eval(t, "document.querySelectorAll('#log .line').length", &lines)
		c.eval(t, "document.getElementById('status').textContent", &status)
		c.eval(t, "document.getElementById('artifacts').innerText", &arts)
		var marked []string
		c.eval(t, `Array.from(document.querySelectorAll("#log .line.triage")).map(l => l.id + " " + l.title)`, &marked)
		if want := []string{"L28 known issue: passwords expire"}; fmt.Sprint(marked) != fmt.Sprint(want) {
			t.Errorf("lines marked as matched by a known issue: %q, want %q", marked, want)
		}
		if lines != 32 || status != "failure: exit status 1" || !strings.Contains(arts, "journal.txt") {
			t.Errorf("finished page: %d lines, status %q, artifacts %q; want 32 lines, failure, journal.txt", lines, status, arts)
		}
	}
	checkFinished()

	// A fresh visit after the end reads only the files the store keeps.
	c.call(t, "Page.navigate", map[string]any{"url": srv.URL + "/" + prefix + "index.html?poll=150#L26"})
	c.waitFor(t, "the finished page", `document.body.dataset.state === "done" && document.getElementById("L26")`)
	checkFinished()
	if *screenshot {
		c.call(t, "Page.navigate", map[string]any{"url": srv.URL + "/" + prefix + "index.html"})
		c.waitFor(t, "the finished page", `document.body.dataset.state === "done"`)
		c.eval(t, `(document.querySelector("details").open = true, window.scrollTo(0, 0), true)`, new(bool))
		raw := c.call(t, "Page.captureScreenshot", map[string]any{"format": "png"})
		var shot struct{ Data string }
		json.Unmarshal(raw, &shot)
		png, _ := base64.StdEncoding.DecodeString(shot.Data)
		if err := os.WriteFile("../docs/log-page.png", png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
