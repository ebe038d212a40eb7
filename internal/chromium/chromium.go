// Package chromium drives Debian's headless chromium over the DevTools
// protocol, for tests of pages in a real browser: navigate, evaluate
// JavaScript, wait for a condition, press keys, take screenshots, which
// it keeps as test artifacts (Artifacts). Only tests import it.
package chromium

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/websocket"
)

// Browser is one headless chromium with one page.
type Browser struct {
	ws *websocket.Conn
	id int
}

// Start runs chromium (installing Debian's package when it is missing
// and the test runs as root; scripts/deps.sh installs it otherwise) with
// one page, and connects to that page. It stops when t ends.
func Start(t *testing.T) *Browser {
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
		"--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0", "--remote-allow-origins=*",
		"--window-size=1280,900", "--hide-scrollbars", "about:blank")
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
		if i > 600 {
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
			b := &Browser{ws: ws}
			b.Call(t, "Page.enable", nil)
			return b
		}
	}
	t.Fatalf("chromium has no page target: %+v", targets)
	return nil
}

// Call sends one DevTools command and returns its result, skipping the
// events that arrive meanwhile.
func (b *Browser) Call(t *testing.T, method string, params any) json.RawMessage {
	t.Helper()
	if params == nil {
		params = map[string]any{}
	}
	b.id++
	if err := websocket.JSON.Send(b.ws, map[string]any{"id": b.id, "method": method, "params": params}); err != nil {
		t.Fatal(err)
	}
	b.ws.SetReadDeadline(time.Now().Add(60 * time.Second))
	for {
		var msg struct {
			ID     int
			Result json.RawMessage
			Error  *struct{ Message string }
		}
		if err := websocket.JSON.Receive(b.ws, &msg); err != nil {
			t.Fatalf("%s: %v", method, err)
		}
		if msg.ID != b.id {
			continue
		}
		if msg.Error != nil {
			t.Fatalf("%s: %s", method, msg.Error.Message)
		}
		return msg.Result
	}
}

// Navigate loads url and waits until its document is complete.
func (b *Browser) Navigate(t *testing.T, url string) {
	t.Helper()
	b.Eval(t, "window.__turtlesOld = true", new(bool))
	b.Call(t, "Page.navigate", map[string]any{"url": url})
	b.WaitFor(t, "the page "+url+" to load", `!window.__turtlesOld && document.readyState === "complete"`)
}

// Eval evaluates a JavaScript expression in the page and decodes its
// value into v.
func (b *Browser) Eval(t *testing.T, expr string, v any) {
	t.Helper()
	raw := b.Call(t, "Runtime.evaluate", map[string]any{"expression": expr, "returnByValue": true})
	var r struct {
		Result struct {
			Value json.RawMessage
		}
		ExceptionDetails *struct{ Text string }
	}
	json.Unmarshal(raw, &r)
	if r.ExceptionDetails != nil {
		t.Fatalf("eval %s: %s", expr, r.ExceptionDetails.Text)
	}
	if err := json.Unmarshal(r.Result.Value, v); err != nil {
		t.Fatalf("eval %s: %s: %v", expr, r.Result.Value, err)
	}
}

// WaitFor polls a boolean expression until it holds, for up to 30 s.
func (b *Browser) WaitFor(t *testing.T, what, expr string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		raw := b.Call(t, "Runtime.evaluate", map[string]any{"expression": "!!(" + expr + ")", "returnByValue": true})
		var r struct{ Result struct{ Value bool } }
		json.Unmarshal(raw, &r) // while a page loads there may be no value
		if r.Result.Value {
			return
		}
		if time.Now().After(deadline) {
			var text string
			b.Eval(t, "document.body ? document.body.innerText.slice(0, 3000) : ''", &text)
			t.Fatalf("waited 30 s for %s (%s); page text:\n%s", what, expr, text)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Press types one key ("Tab", "Enter") into the page.
func (b *Browser) Press(t *testing.T, key string) {
	t.Helper()
	codes := map[string]int{"Tab": 9, "Enter": 13}
	for _, typ := range []string{"rawKeyDown", "keyUp"} {
		p := map[string]any{"type": typ, "key": key, "code": key, "windowsVirtualKeyCode": codes[key]}
		if key == "Enter" && typ == "rawKeyDown" {
			b.Call(t, "Input.dispatchKeyEvent", map[string]any{"type": "char", "key": key, "text": "\r"})
		}
		b.Call(t, "Input.dispatchKeyEvent", p)
	}
}

// Screenshot writes a PNG of the whole page to name (a file name without
// a directory) under Artifacts, and returns its path.
func (b *Browser) Screenshot(t *testing.T, name string) string {
	t.Helper()
	var size struct{ Width, Height float64 }
	b.Eval(t, `({width: document.documentElement.scrollWidth, height: document.documentElement.scrollHeight})`, &size)
	raw := b.Call(t, "Page.captureScreenshot", map[string]any{"format": "png", "captureBeyondViewport": true,
		"clip": map[string]any{"x": 0, "y": 0, "width": size.Width, "height": min(size.Height, 8000), "scale": 1}})
	var shot struct{ Data string }
	json.Unmarshal(raw, &shot)
	png, err := base64.StdEncoding.DecodeString(shot.Data)
	if err != nil || len(png) == 0 {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	path := filepath.Join(Artifacts(t), name)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", path)
	return path
}

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// Artifacts is the directory where t keeps what a person may want to look
// at after the run: $TURTLES_TEST_ARTIFACTS/TEST-NAME when the variable is
// set (make test sets it to test-artifacts/), else a directory of t's own
// that goes when it ends.
func Artifacts(t *testing.T) string {
	t.Helper()
	root := os.Getenv("TURTLES_TEST_ARTIFACTS")
	if root == "" {
		return t.TempDir()
	}
	dir := filepath.Join(root, unsafeName.ReplaceAllString(t.Name(), "_"))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}
