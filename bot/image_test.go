package bot

import (
	"bytes"
	"context"
	"crypto/rand"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/turtles-ci/turtles"
	"github.com/turtles-ci/turtles/image"
	"github.com/turtles-ci/turtles/image/cache"
)

type fakeResolver map[string][]string

func (f fakeResolver) LookupHost(_ context.Context, host string) ([]string, error) {
	if a, ok := f[host]; ok {
		return a, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

// A bot that lacks a pinned image fetches it from a peer before the VM
// boots; one that cannot get it ends the task as infra, before any VM.
func TestPinnedImageFromPeer(t *testing.T) {
	// A peer with a small image.
	src := t.TempDir()
	disk := make([]byte, 2<<20)
	rand.Read(disk)
	os.WriteFile(filepath.Join(src, "tiny.qcow2"), disk, 0o644)
	os.WriteFile(filepath.Join(src, "tiny.vmlinuz"), []byte("kernel"), 0o644)
	if err := image.Write(filepath.Join(src, "tiny.json"), &image.Manifest{Name: "tiny", Disk: "tiny.qcow2", Kernel: "tiny.vmlinuz", Append: "console=ttyS0"}); err != nil {
		t.Fatal(err)
	}
	peerCache, err := cache.New(cache.Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	id, err := peerCache.Import(filepath.Join(src, "tiny.json"))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.StripPrefix("/images", peerCache.Handler()))
	t.Cleanup(srv.Close)
	host, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	p, _ := strconv.Atoi(port)

	dir := t.TempDir()
	images, err := cache.New(cache.Config{Dir: dir, Peers: &cache.Peers{
		Name: "images.turtles.test", Port: p, Resolver: fakeResolver{"images.turtles.test": {host}},
	}, ProbeTimeout: 2 * time.Second, StallTimeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	r := runner{vm: VMConfig{ImagesDir: dir, Images: images}}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	var out bytes.Buffer
	m, release, err := r.image(ctx, string(id), &out)
	if err != nil {
		t.Fatalf("image: %v\n%s", err, out.String())
	}
	got, err := os.ReadFile(m.Disk)
	if err != nil || !bytes.Equal(got, disk) || filepath.Dir(m.Disk) != dir || m.Append != "console=ttyS0" {
		t.Errorf("fetched disk %s (%d bytes, %v), append %q", m.Disk, len(got), err, m.Append)
	}
	if !strings.Contains(out.String(), "fetching image "+string(id)) || !strings.Contains(out.String(), "fetched image") {
		t.Errorf("task log does not tell of the fetch:\n%s", out.String())
	}
	// In use: prune keeps it.
	if res, err := images.Prune(0); err != nil || len(res.Removed) != 0 {
		t.Errorf("Prune while in use: %+v, %v", res, err)
	}
	release()

	// Present now: no fetch.
	out.Reset()
	_, release, err = r.image(ctx, string(id), &out)
	if err != nil || strings.Contains(out.String(), "fetching") {
		t.Errorf("second resolve: %v, log %q", err, out.String())
	}
	release()

	// Missing everywhere: infra, before any VM.
	missing := "tiny-" + strings.Repeat("0", 64)
	out.Reset()
	_, err = r.testVM(ctx, turtles.Task{}, workspace{}, &out, "true", time.Minute, vmTask{image: missing})
	want := turtles.Outcome{Class: turtles.Infra, ExitCode: -1, Reason: "no image mirror or peer has image tiny-000000000000"}
	if diff := cmp.Diff(want, turtles.OutcomeOf(err)); diff != "" {
		t.Errorf("missing image: outcome of %v (-want +got):\n%s", err, diff)
	}
	// The sources and what they said are the cause: in the error, for
	// the bot's log.
	if err == nil || !strings.Contains(err.Error(), "image "+missing) || !strings.Contains(err.Error(), "does not have it") {
		t.Errorf("missing image: error %v does not name the image and why", err)
	}
}
