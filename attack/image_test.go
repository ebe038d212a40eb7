package attack

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/turtles-ci/turtles/e2e"
	"github.com/turtles-ci/turtles/image"
)

// runTurtles runs the real binary with args and returns its stdout, stderr
// and error.
func runTurtles(t *testing.T, ctx context.Context, args ...string) (string, string, error) {
	t.Helper()
	cmd := exec.CommandContext(ctx, e2e.Bin(t), args...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	return out.String(), errOut.String(), err
}

// pinTiny pins an image with a 1 MiB random disk into a fresh images
// directory and returns the directory, the pin and the disk's file name.
func pinTiny(t *testing.T, ctx context.Context) (dir, id, disk string) {
	t.Helper()
	src := t.TempDir()
	b := make([]byte, 1<<20)
	rand.Read(b)
	os.WriteFile(filepath.Join(src, "tiny.qcow2"), b, 0o644)
	image.Write(filepath.Join(src, "tiny.json"), &image.Manifest{Name: "tiny", Disk: "tiny.qcow2"})
	dir = t.TempDir()
	out, errOut, err := runTurtles(t, ctx, "image", "pin", filepath.Join(src, "tiny.json"), "--images-dir", dir)
	m := regexp.MustCompile(`tiny: (tiny-[0-9a-f]{64})`).FindStringSubmatch(out)
	if err != nil || m == nil {
		t.Fatalf("image pin: %q %v\n%s", out, err, errOut)
	}
	mf, err := image.Load(filepath.Join(dir, m[1]+".json"))
	if err != nil {
		t.Fatal(err)
	}
	return dir, m[1], filepath.Base(mf.Disk)
}

// liarPeer serves the files of dir under /images/ and, for names ending
// in .qcow2, sends the file's bytes and then junk without end. It listens
// on 127.0.0.1 only and counts the disk requests it got.
func liarPeer(t *testing.T, dir string) (port int, diskGets *atomic.Int64) {
	t.Helper()
	diskGets = &atomic.Int64{}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	files := http.StripPrefix("/images/", http.FileServer(http.Dir(dir)))
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet || !strings.HasSuffix(r.URL.Path, ".qcow2") {
			files.ServeHTTP(w, r)
			return
		}
		diskGets.Add(1)
		b, err := os.ReadFile(filepath.Join(dir, filepath.Base(r.URL.Path)))
		if err != nil {
			http.NotFound(w, r)
			return
		}
		w.Write(b) // no Content-Length: chunked, as a stream of unknown end
		junk := bytes.Repeat([]byte("fill the disk "), 1<<12)
		for r.Context().Err() == nil {
			if _, err := w.Write(junk); err != nil {
				return
			}
		}
	})}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return l.Addr().(*net.TCPAddr).Port, diskGets
}

// TestAttackImagePeerStreamsForever: a peer found through DNS (the
// --image-peers name) answers for a pinned image and sends its disk
// without end. At HEAD the fetch wrote until the disk was full; now it
// stops at the size the manifest records and names the peer.
func TestAttackImagePeerStreamsForever(t *testing.T) {
	attack(t, "images: a peer found by DNS streams a pinned image's disk without end")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	seed, id, disk := pinTiny(t, ctx)
	port, gets := liarPeer(t, seed)

	dir := t.TempDir()
	_, errOut, err := runTurtles(t, ctx, "image", "pull", id, "--images-dir", dir, "--image-peers", fmt.Sprintf("localhost:%d", port))
	if err == nil {
		t.Fatalf("image pull succeeded from a peer that streams without end\n%s", errOut)
	}
	if ctx.Err() != nil {
		t.Fatalf("image pull still reading after 90 s:\n%s", errOut)
	}
	peer := fmt.Sprintf("http://127.0.0.1:%d/images/", port)
	want := fmt.Sprintf("image source %s sent more than the %d bytes its manifest records for %s", peer, 1<<20, disk)
	if !strings.Contains(errOut, want) {
		t.Errorf("image pull's error does not blame the peer; want %q in:\n%s", want, errOut)
	}
	if gets.Load() == 0 {
		t.Error("the peer was never asked for the disk: the attack was not tried")
	}
	if _, err := os.Stat(filepath.Join(dir, disk)); err == nil {
		t.Errorf("the disk %s is in the cache", disk)
	}
	var kept int64
	filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			kept += fi.Size()
		}
		return nil
	})
	if kept > 1<<20 {
		t.Errorf("the images directory holds %d bytes after the pull, more than the 1 MiB image", kept)
	}
}

// TestAttackImagePetabyteManifest: a pull request may pin any manifest; a
// mirror serves one that claims a 1 PiB disk. The fetch must refuse it
// before asking for the disk.
func TestAttackImagePetabyteManifest(t *testing.T) {
	attack(t, "images: a pinned manifest claims a 1 PiB disk")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	mirror := t.TempDir()
	sum := strings.Repeat("ab", 32)
	disk := "huge-" + sum + ".qcow2"
	manifest := []byte(fmt.Sprintf("{\n  \"name\": \"huge\",\n  \"disk\": %q,\n  \"sha256\": %q,\n  \"size\": %d\n}\n", disk, sum, int64(1)<<50))
	h := sha256.Sum256(manifest)
	id := "huge-" + hex.EncodeToString(h[:])
	os.WriteFile(filepath.Join(mirror, id+".json"), manifest, 0o644)
	os.WriteFile(filepath.Join(mirror, disk), []byte("the start of a petabyte"), 0o644)
	port, gets := liarPeer(t, mirror)

	dir := t.TempDir()
	_, errOut, err := runTurtles(t, ctx, "image", "pull", id, "--images-dir", dir, "--image-mirrors", fmt.Sprintf("http://127.0.0.1:%d/images/", port))
	if err == nil {
		t.Fatalf("image pull of a 1 PiB image succeeded\n%s", errOut)
	}
	if want := fmt.Sprintf("claims %d bytes, more than the %d this host fetches", int64(1)<<50, int64(64)<<30); !strings.Contains(errOut, want) {
		t.Errorf("want %q in the error:\n%s", want, errOut)
	}
	if n := gets.Load(); n != 0 {
		t.Errorf("the disk was requested %d times; the manifest alone should have been refused", n)
	}
}
