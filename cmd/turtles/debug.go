package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/turtles-ci/turtles"
	"github.com/turtles-ci/turtles/image"
	"github.com/turtles-ci/turtles/image/cache"
	"github.com/turtles-ci/turtles/state"
	"github.com/turtles-ci/turtles/store"
	"github.com/turtles-ci/turtles/vm"
)

// debugCmd resumes the held VM of a failed attempt (a context's hold:)
// on this machine: fetched from the server with the log's access, its
// image found by sha256 among the local images, and a shell in it, or a
// command.
func debugCmd() *cobra.Command {
	var imageRef string
	var timeout time.Duration
	var network bool
	cmd := &cobra.Command{
		Use:   "debug TASK-URL [-- COMMAND...]",
		Short: "Resume the held VM of a failed attempt, with a shell in it",
		Long: `debug fetches the VM that a failed attempt held (its context says hold:;
its page shows this command) from the turtles server of TASK-URL, the
attempt's page, with the same access as its log. It finds the VM's image by
its sha256 in the images directory (turtles image pull or build it there if
it is missing), resumes the VM in the state it failed in, with no network
unless --network (its SSH port is all that reaches it), and opens a shell
in it as the task's user; with COMMAND, it runs that instead and exits with
its status. The VM is stopped and removed when debug exits.

On a server with sign-in, set TURTLES_COOKIE to the session cookie of a
signed-in browser ("turtles_session=..." or "__Host-turtles_session=...").`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, dir, err := vmSetup(cmd)
			if err != nil {
				return err
			}
			ctx, _, stop := signals()
			defer stop()
			code, err := debugHeld(ctx, debugRun{
				url: args[0], command: args[1:], imagesDir: s.ImagesDir, imageRef: imageRef, dir: dir,
				timeout: timeout, stdin: cmd.InOrStdin(), stdout: cmd.OutOrStdout(), stderr: cmd.ErrOrStderr(),
				interactive: cmd.ArgsLenAtDash() < 0 && len(args) == 1, network: network,
			})
			if err != nil {
				return err
			}
			if code != 0 {
				os.Exit(code)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&imageRef, "image", "", "the held VM's image, as turtles vm start takes it, when the images directory does not have it under its name")
	cmd.Flags().BoolVar(&network, "network", false, "let the VM reach the network, this host's loopback included (by default it reaches nothing: it ran someone's test)")
	cmd.Flags().DurationVar(&timeout, "timeout", 5*time.Minute, "how long the resumed VM may take to accept SSH")
	addFlags(cmd.Flags(), "data-dir", "images-dir", "log-level", "log-format")
	return cmd
}

// debugRun is one turtles debug.
type debugRun struct {
	url                  string
	command              []string
	imagesDir, imageRef  string
	dir                  string // the machines' directory
	timeout              time.Duration
	stdin                io.Reader
	stdout, stderr       io.Writer
	interactive, network bool
}

// maxHeldFile bounds each file of a held VM: memory and disk of the
// largest VM a context may ask for.
const maxHeldFile = 512 << 30

func debugHeld(ctx context.Context, d debugRun) (int, error) {
	heldURL, err := heldVMURL(ctx, d.url)
	if err != nil {
		return 0, err
	}
	fmt.Fprintf(d.stderr, "turtles: fetching the held VM %s\n", heldURL)
	body, err := get(ctx, heldURL)
	if err != nil {
		return 0, err
	}
	defer body.Close()
	b := make([]byte, 4)
	rand.Read(b)
	h, err := vm.Unpack(body, d.dir, "debug-"+hex.EncodeToString(b), maxHeldFile)
	if err != nil {
		return 0, err
	}
	img, err := heldImage(h.Meta, d.imagesDir, d.imageRef)
	if err != nil {
		h.Remove()
		return 0, err
	}
	fmt.Fprintf(d.stderr, "turtles: resuming the VM held %s ago (image %s, %d CPUs, %d MiB, %s)\n",
		time.Since(h.Meta.Held).Round(time.Second), h.Meta.Image, h.Meta.CPUs, h.Meta.MemoryMB, h.Meta.Accel)
	began := time.Now()
	m, err := h.Resume(ctx, vm.ResumeConfig{Image: img, QEMU: qemuBinary, Timeout: d.timeout, Network: d.network})
	if err != nil {
		return 0, fmt.Errorf("resume the held VM: %w", err)
	}
	defer m.Stop(context.Background())
	fmt.Fprintf(d.stderr, "turtles: resumed in %.1fs (memory loaded %.1fs, clock set %.1fs, SSH %.1fs); ssh -i %s -p %d %s@127.0.0.1\n",
		time.Since(began).Seconds(), m.Timing.Load.Seconds(), m.Timing.Refresh.Seconds(), m.Timing.SSH.Seconds(), m.KeyFile(), m.SSHPort, m.User)
	if !d.interactive {
		return m.Exec(ctx, strings.Join(d.command, " "), d.stdin, d.stdout, d.stderr)
	}
	fmt.Fprintf(d.stderr, "turtles: a shell in the VM; it is stopped and removed when the shell exits\n")
	if _, err := exec.LookPath("ssh"); err != nil {
		// No terminal without ssh: a plain shell on stdin.
		return m.Exec(ctx, "exec /bin/sh -i", d.stdin, d.stdout, d.stderr)
	}
	c := exec.CommandContext(ctx, "ssh", "-t", "-i", m.KeyFile(), "-p", strconv.Itoa(m.SSHPort),
		"-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
		"--", m.User+"@127.0.0.1")
	c.Stdin, c.Stdout, c.Stderr = d.stdin, d.stdout, d.stderr
	err = c.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), nil
	}
	return 0, err
}

// heldVMURL finds the held VM of the attempt whose page is taskURL
// (BASE/tasks/ID or BASE/tasks/ID/ATTEMPT): the task's repository, commit
// and context from the server's API name its files.
func heldVMURL(ctx context.Context, taskURL string) (string, error) {
	u, err := url.Parse(taskURL)
	if err != nil || u.Scheme != "http" && u.Scheme != "https" {
		return "", fmt.Errorf("%q is not the URL of a task's page (https://HOST/tasks/ID/ATTEMPT)", taskURL)
	}
	i := strings.LastIndex(u.Path, "/tasks/")
	if i < 0 {
		return "", fmt.Errorf("%q is not the URL of a task's page (https://HOST/tasks/ID/ATTEMPT)", taskURL)
	}
	base := *u
	base.Path, base.RawQuery, base.Fragment = u.Path[:i], "", ""
	id, attempt, _ := strings.Cut(strings.Trim(u.Path[i+len("/tasks/"):], "/"), "/")
	body, err := get(ctx, base.String()+"/api/v1/tasks/"+url.PathEscape(id))
	if err != nil {
		return "", err
	}
	defer body.Close()
	var t state.Task
	if err := json.NewDecoder(io.LimitReader(body, 1<<20)).Decode(&t); err != nil {
		return "", fmt.Errorf("task %s: %w", id, err)
	}
	n := 0
	for _, a := range t.Attempts {
		n = max(n, a.Number)
	}
	if attempt != "" {
		if n, err = strconv.Atoi(attempt); err != nil || n < 1 {
			return "", fmt.Errorf("%q: the attempt must be a number from 1", attempt)
		}
	}
	if n == 0 {
		return "", fmt.Errorf("task %s has no attempt", id)
	}
	prefix := store.AttemptPrefix(turtles.Task{Repo: turtles.Repo{Name: t.Repo}, SHA: t.SHA, Context: t.Context, Attempt: n})
	return base.String() + "/logs/" + prefix + store.HeldName, nil
}

// get fetches u with the session cookie of TURTLES_COOKIE, if set.
func get(ctx context.Context, u string) (io.ReadCloser, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	if c := os.Getenv("TURTLES_COOKIE"); c != "" {
		req.Header.Set("Cookie", c)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	switch resp.StatusCode {
	case http.StatusOK:
		return resp.Body, nil
	case http.StatusNotFound:
		resp.Body.Close()
		if strings.HasSuffix(u, "/"+store.HeldName) {
			return nil, fmt.Errorf("%s: no held VM: the attempt did not fail, its context has no hold:, the bot did not hold it (its log says why), it expired, or you may not read its log (sign in: TURTLES_COOKIE)", u)
		}
		return nil, fmt.Errorf("%s: not found (or you may not read it: sign in, TURTLES_COOKIE)", u)
	}
	resp.Body.Close()
	return nil, fmt.Errorf("GET %s: %s", u, resp.Status)
}

// heldImage finds the held VM's image on this host: ref (a name or path
// as turtles vm start takes it), else the pin it was named by in the
// image cache, else any manifest in the images directory whose disk has
// the recorded sha256. Resume checks every file's hash.
func heldImage(meta vm.HoldMeta, imagesDir, ref string) (*image.Manifest, error) {
	if ref != "" {
		m, err := image.Resolve(ref, imagesDir)
		if err != nil {
			return nil, err
		}
		return m, vm.CheckImage(meta, m)
	}
	if id, err := cache.ParseID(meta.Ref); err == nil {
		p := filepath.Join(imagesDir, id.ManifestFile())
		if m, err := image.Load(p); err == nil && vm.CheckImage(meta, m) == nil {
			return m, nil
		}
	}
	paths, _ := filepath.Glob(filepath.Join(imagesDir, "*.json"))
	for _, p := range paths {
		m, err := image.Load(p)
		if err != nil || m.SHA256 != meta.DiskSHA256 && !strings.Contains(filepath.Base(m.Disk), meta.DiskSHA256) {
			continue
		}
		if vm.CheckImage(meta, m) == nil {
			return m, nil
		}
	}
	how := "copy it (its manifest and files) from the bot's images directory"
	if _, err := cache.ParseID(meta.Ref); err == nil {
		how = "fetch it with `turtles image pull " + meta.Ref + "`"
	}
	return nil, fmt.Errorf("the held VM's image %s (disk sha256 %s) is not in %s: %s into %s, or name its manifest with --image",
		meta.Image, meta.DiskSHA256, imagesDir, how, imagesDir)
}
