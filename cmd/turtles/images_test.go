package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/turtles-ci/turtles/image"
	"github.com/turtles-ci/turtles/image/cache"
	"github.com/turtles-ci/turtles/store/s3/s3test"
)

// turtlesCmd runs the CLI in process and returns its stdout and stderr.
func turtlesCmd(t *testing.T, ctx context.Context, args ...string) (string, string, error) {
	t.Helper()
	cmd := rootCmd()
	var out, errOut bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(ctx)
	return out.String(), errOut.String(), err
}

// The image commands end to end: pin a built image, serve it, pull it
// from the peer, push it to S3 (versitygw), pull it from that mirror
// resuming a partial download, list and prune.
// serveImagesDir runs `turtles image serve` on dir until stop, and waits
// until it offers image id. served receives what serve returned.
func serveImagesDir(t *testing.T, ctx context.Context, dir, id string) (addr string, stop func(), served <-chan error) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr = l.Addr().String()
	l.Close()
	sctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		_, _, err := turtlesCmd(t, sctx, "image", "serve", "--listen", addr, "--images-dir", dir)
		done <- err
	}()
	for i := 0; ; i++ {
		resp, err := http.Head("http://" + addr + "/images/" + id + ".json")
		if err == nil {
			resp.Body.Close()
			break
		}
		if i == 50 {
			stop()
			t.Fatalf("image serve did not answer: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return addr, stop, done
}

func TestImageCommands(t *testing.T) {
	if testing.Short() {
		t.Skip("starts versitygw")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	src := t.TempDir()
	disk := make([]byte, 3<<20)
	rand.Read(disk)
	os.WriteFile(filepath.Join(src, "tiny.qcow2"), disk, 0o644)
	os.WriteFile(filepath.Join(src, "tiny.vmlinuz"), []byte("kernel"), 0o644)
	os.WriteFile(filepath.Join(src, "tiny.initrd"), []byte("initrd"), 0o644)
	image.Write(filepath.Join(src, "tiny.json"), &image.Manifest{Name: "tiny", Disk: "tiny.qcow2", Kernel: "tiny.vmlinuz", Initrd: "tiny.initrd"})

	a, b, c := t.TempDir(), t.TempDir(), t.TempDir()
	out, _, err := turtlesCmd(t, ctx, "image", "pin", filepath.Join(src, "tiny.json"), "--images-dir", a)
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^images:\n  tiny: (tiny-[0-9a-f]{64})\n$`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("pin printed %q", out)
	}
	id := m[1]

	// Serve a; pull into b from the peer.
	addr, stop, served := serveImagesDir(t, ctx, a, id)
	out, _, err = turtlesCmd(t, ctx, "image", "pull", id, "--images-dir", b, "--image-peers", addr)
	if err != nil || strings.TrimSpace(out) != filepath.Join(b, id+".json") {
		t.Fatalf("pull from peer: %q, %v", out, err)
	}
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	var metrics bytes.Buffer
	metrics.ReadFrom(resp.Body)
	resp.Body.Close()
	if !strings.Contains(metrics.String(), `turtles_image_serve_requests_total{code="200"}`) {
		t.Errorf("serve metrics:\n%s", metrics.String())
	}
	stop()
	if err := <-served; err != nil {
		t.Errorf("image serve: %v", err)
	}

	// Push b's copy to S3; pull it into c, which has half the disk already.
	srv, err := s3test.Versity(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	bucket, err := srv.CreateBucket(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("TURTLES_S3_ACCESS_KEY", s3test.AccessKey)
	t.Setenv("TURTLES_S3_SECRET_KEY", s3test.SecretKey)
	mirror := fmt.Sprintf("s3://%s/images?endpoint=%s&region=%s&path_style=true", bucket, srv.Endpoint, s3test.Region)
	out, _, err = turtlesCmd(t, ctx, "image", "push", id, "--to", mirror, "--images-dir", b)
	if err != nil || !strings.Contains(out, "tiny: "+id) {
		t.Fatalf("push: %q, %v", out, err)
	}
	mf, _ := image.Load(filepath.Join(b, id+".json"))
	os.MkdirAll(filepath.Join(c, ".tmp"), 0o755)
	os.WriteFile(filepath.Join(c, ".tmp", filepath.Base(mf.Disk)+".part"), disk[:1<<20], 0o644)
	_, logs, err := turtlesCmd(t, ctx, "image", "pull", id, "--images-dir", c, "--image-mirrors", mirror, "--log-level", "debug")
	if err != nil {
		t.Fatalf("pull from S3: %v\n%s", err, logs)
	}
	if !strings.Contains(logs, "resuming image download") {
		t.Errorf("no resume in the log:\n%s", logs)
	}
	got, _ := os.ReadFile(filepath.Join(c, filepath.Base(mf.Disk)))
	if !bytes.Equal(got, disk) {
		t.Errorf("disk pulled from S3 differs (%d bytes)", len(got))
	}

	out, _, err = turtlesCmd(t, ctx, "image", "list", "--images-dir", c)
	if err != nil || !strings.Contains(out, id) || !strings.Contains(out, "3.0 MiB") {
		t.Errorf("list: %q, %v", out, err)
	}
	out, _, err = turtlesCmd(t, ctx, "image", "prune", "--keep", "1MiB", "--images-dir", c)
	if err != nil || !strings.Contains(out, "removed "+id) {
		t.Errorf("prune: %q, %v", out, err)
	}
	if cc, _ := cache.New(cache.Config{Dir: c}); cc.Has(cache.ID(id)) {
		t.Error("image still there after prune")
	}
	if _, _, err := turtlesCmd(t, ctx, "image", "prune", "--keep", "lots", "--images-dir", c); err == nil {
		t.Error("prune --keep lots: no error")
	}
}

func TestProgressLine(t *testing.T) {
	for _, tc := range []struct {
		p       cache.Progress
		elapsed time.Duration
		want    string
	}{
		{p: cache.Progress{File: "d.qcow2", Done: 512 << 20, Total: 1 << 30}, elapsed: 2 * time.Second,
			want: "d.qcow2                      [==========          ] 512 MiB / 1.0 GiB  256 MiB/s  ETA 2s   "},
		{p: cache.Progress{File: "d.qcow2", Done: 1 << 20, Total: -1}, elapsed: time.Second,
			want: "d.qcow2                      [                    ] 1.0 MiB / ?  1.0 MiB/s   "},
	} {
		if got := progressLine(tc.p, tc.elapsed); got != tc.want {
			t.Errorf("progressLine(%+v) =\n%q, want\n%q", tc.p, got, tc.want)
		}
	}
}
