package main

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/turtles-ci/turtles/image/debian"
)

func init() { register("time-to-green", timeToGreen) }

// The demo's repository: two contexts on the host, one in a Debian VM.
const ttgConfig = `contexts:
  - name: unit-tests
    command: ./test/unit.sh
  - name: shellcheck-lite
    command: sh -n test/unit.sh && echo "syntax ok"
  - name: debian-vm
    image: debian-12
    command: ./test/unit.sh && uname -r
`

const ttgSuite = `#!/bin/sh
echo "1..3"
for i in 1 2 3; do sleep 1; echo "ok $i - adds numbers"; done
`

const ttgSecret = "bench-time-to-green"

// timeToGreen is what a user waits for: a signed push webhook for the
// demo's repository (three contexts, one in a VM) sent to `turtles serve`
// with two slots, until every context of the commit has finished green.
// Two servers, one with warm starts (the default) and one with
// --vm-warm-states off, take turns on new commits: one warm-up each, then
// 5 rounds; medians. Goal (issue 18): <= 12 s under TCG.
func timeToGreen(ctx context.Context) error {
	manifest, err := debian.Cached(ctx, debian.CacheDir(), "debian-12", benchDebianMirror, os.Stderr, slog.Default())
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "turtles-bench-ttg-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "turtles")
	fmt.Println("==> building turtles")
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/turtles").CombinedOutput(); err != nil {
		return fmt.Errorf("go build: %w: %s", err, out)
	}
	repo := filepath.Join(dir, "hello")
	git := func(args ...string) (string, error) {
		cmd := exec.CommandContext(ctx, "git", append([]string{"-C", repo, "-c", "user.name=b", "-c", "user.email=b@example.com"}, args...)...)
		out, err := cmd.CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}
	os.MkdirAll(filepath.Join(repo, "test"), 0o755)
	os.WriteFile(filepath.Join(repo, ".turtles.yaml"), []byte(ttgConfig), 0o644)
	os.WriteFile(filepath.Join(repo, "test", "unit.sh"), []byte(ttgSuite), 0o755)
	if out, err := git("init", "-q", "-b", "main"); err != nil {
		return fmt.Errorf("git init: %w: %s", err, out)
	}
	commit := func(i int) (string, error) {
		os.WriteFile(filepath.Join(repo, "run.txt"), []byte(fmt.Sprint(i)), 0o644)
		if out, err := git("add", "-A"); err != nil {
			return "", fmt.Errorf("git add: %w: %s", err, out)
		}
		if out, err := git("commit", "-qm", fmt.Sprint("run ", i)); err != nil {
			return "", fmt.Errorf("git commit: %w: %s", err, out)
		}
		return git("rev-parse", "HEAD")
	}
	type server struct {
		name, url string
		times     []time.Duration
	}
	var servers []*server
	for _, s := range []struct{ name, warm string }{{"warm", filepath.Join(dir, "warm")}, {"cold", "off"}} {
		port, err := freeTCPPort()
		if err != nil {
			return err
		}
		data := filepath.Join(dir, "data-"+s.name)
		cmd := exec.CommandContext(ctx, bin, "serve", "--data-dir", data, "--listen", fmt.Sprintf("127.0.0.1:%d", port),
			"--slots", "2", "--images-dir", filepath.Dir(manifest), "--vm-warm-states", s.warm)
		cmd.Env = append(os.Environ(), "TURTLES_WEBHOOK_SECRET="+ttgSecret)
		logf, err := os.Create(data + ".log")
		if err != nil {
			return err
		}
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			return err
		}
		defer func() { cmd.Process.Signal(os.Interrupt); cmd.Wait(); logf.Close() }()
		srv := &server{name: s.name, url: fmt.Sprintf("http://127.0.0.1:%d", port)}
		if err := waitHealthy(ctx, srv.url); err != nil {
			return fmt.Errorf("%s server: %w (log: %s)", s.name, err, data+".log")
		}
		servers = append(servers, srv)
	}
	const rounds = 5
	for i := 0; i <= rounds; i++ {
		for j, s := range servers {
			sha, err := commit(i*len(servers) + j)
			if err != nil {
				return err
			}
			d, err := untilGreen(ctx, s.url, repo, sha)
			if err != nil {
				return fmt.Errorf("%s server, round %d: %w", s.name, i, err)
			}
			if i == 0 {
				fmt.Printf("warm-up, %s: %.1f s\n", s.name, d.Seconds())
				continue
			}
			s.times = append(s.times, d)
			fmt.Printf("round %d, %s: %.1f s\n", i, s.name, d.Seconds())
		}
	}
	w, c := median(servers[0].times), median(servers[1].times)
	fmt.Printf("median of %d: warm starts %.1f s, cold boots %.1f s (%.2f of it)\n", rounds, w.Seconds(), c.Seconds(), w.Seconds()/c.Seconds())
	result("time-to-green", fmt.Sprintf("%.1f", w.Seconds()), "s", "<= 12")
	return nil
}

func freeTCPPort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func waitHealthy(ctx context.Context, url string) error {
	for i := 0; i < 300; i++ {
		if resp, err := http.Get(url + "/healthz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s/healthz did not answer", url)
}

// untilGreen sends the push of sha and returns how long until its three
// test tasks have finished, all green.
func untilGreen(ctx context.Context, url, repo, sha string) (time.Duration, error) {
	body, _ := json.Marshal(map[string]any{"ref": "refs/heads/main", "after": sha,
		"before": "0000000000000000000000000000000000000000", "pusher": map[string]any{"name": "bench"},
		"repository": map[string]any{"full_name": "bench/hello", "clone_url": "file://" + repo}})
	mac := hmac.New(sha256.New, []byte(ttgSecret))
	mac.Write(body)
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url+"/hook/github", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-GitHub-Event", "push")
	req.Header.Set("X-GitHub-Delivery", "ttg-"+sha)
	req.Header.Set("X-Hub-Signature-256", "sha256="+hex.EncodeToString(mac.Sum(nil)))
	began := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return 0, fmt.Errorf("webhook: %s: %s", resp.Status, b)
	}
	deadline := time.Now().Add(10 * time.Minute)
	for time.Now().Before(deadline) {
		var list struct {
			Tasks []struct {
				Kind    string `json:"kind"`
				Context string `json:"context"`
				State   string `json:"state"`
				Outcome *struct {
					Class  string `json:"class"`
					Reason string `json:"reason"`
				} `json:"outcome"`
			} `json:"tasks"`
		}
		if resp, err := http.Get(url + "/api/v1/tasks?sha=" + sha); err == nil {
			json.NewDecoder(resp.Body).Decode(&list)
			resp.Body.Close()
		}
		done := 0
		for _, t := range list.Tasks {
			if t.Kind != "test" || t.State != "finished" || t.Outcome == nil {
				continue
			}
			if t.Outcome.Class != "success" {
				return 0, fmt.Errorf("%s: %s (%s)", t.Context, t.Outcome.Class, t.Outcome.Reason)
			}
			done++
		}
		if done == 3 {
			return time.Since(began), nil
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return 0, fmt.Errorf("commit %s not green within 10 minutes", sha[:12])
}
