package registry

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/crane"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

func start(t *testing.T, dir string) *Registry {
	t.Helper()
	r, err := Start("127.0.0.1:0", Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func ref(t *testing.T, r *Registry, s string) name.Reference {
	t.Helper()
	ref, err := name.ParseReference(r.Addr()+"/"+s, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	return ref
}

// layers returns the compressed bytes of every layer of img.
func layers(t *testing.T, img v1.Image) [][]byte {
	t.Helper()
	ls, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for _, l := range ls {
		rc, err := l.Compressed()
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

func digest(t *testing.T, d interface{ Digest() (v1.Hash, error) }) v1.Hash {
	t.Helper()
	h, err := d.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// TestPushPullRestart pushes an image and a multi-platform index with
// go-containerregistry's client, pulls them back, restarts the registry on
// the same directory (another port) and pulls them again, byte for byte;
// a tag deleted before a restart stays deleted after it.
func TestPushPullRestart(t *testing.T) {
	dir := t.TempDir()
	r := start(t, dir)

	img, err := random.Image(4096, 3)
	if err != nil {
		t.Fatal(err)
	}
	idx, err := random.Index(1024, 1, 2)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref(t, r, "etcd:3.5"), img); err != nil {
		t.Fatalf("push image: %v", err)
	}
	if err := remote.WriteIndex(ref(t, r, "team/multi:1"), idx); err != nil {
		t.Fatalf("push index: %v", err)
	}
	if err := remote.WriteIndex(ref(t, r, "team/gone:1"), idx); err != nil {
		t.Fatalf("push index: %v", err)
	}
	want := layers(t, img)

	check := func(r *Registry, when string) {
		t.Helper()
		got, err := remote.Image(ref(t, r, "etcd:3.5"))
		if err != nil {
			t.Fatalf("%s: pull image: %v", when, err)
		}
		if g, w := digest(t, got), digest(t, img); g != w {
			t.Errorf("%s: pulled image %s, pushed %s", when, g, w)
		}
		if !slices.EqualFunc(layers(t, got), want, func(a, b []byte) bool { return string(a) == string(b) }) {
			t.Errorf("%s: pulled layers differ from the pushed ones", when)
		}
		gotIdx, err := remote.Index(ref(t, r, "team/multi:1"))
		if err != nil {
			t.Fatalf("%s: pull index: %v", when, err)
		}
		if g, w := digest(t, gotIdx), digest(t, idx); g != w {
			t.Errorf("%s: pulled index %s, pushed %s", when, g, w)
		}
		// By digest too: the registry keeps a manifest under both.
		byDigest := r.Addr() + "/etcd@" + digest(t, img).String()
		if _, err := crane.Manifest(byDigest, crane.Insecure); err != nil {
			t.Errorf("%s: manifest by digest: %v", when, err)
		}
		tags, err := crane.ListTags(r.Addr()+"/etcd", crane.Insecure)
		if err != nil || !slices.Equal(tags, []string{"3.5"}) {
			t.Errorf("%s: tags of etcd = %q, %v; want [3.5]", when, tags, err)
		}
	}
	check(r, "before restart")

	if err := crane.Delete(r.Addr()+"/team/gone:1", crane.Insecure); err != nil {
		t.Fatalf("delete tag: %v", err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}

	r2 := start(t, dir)
	if r2.Addr() == r.Addr() {
		t.Logf("restarted on the same address %s", r2.Addr())
	}
	check(r2, "after restart")
	_, err = remote.Index(ref(t, r2, "team/gone:1"))
	var terr *transport.Error
	if !errors.As(err, &terr) || terr.StatusCode != http.StatusNotFound {
		t.Errorf("deleted tag after restart: %v, want 404", err)
	}
	repos, err := crane.Catalog(r2.Addr(), crane.Insecure)
	if err != nil || !slices.Contains(repos, "etcd") || !slices.Contains(repos, "team/multi") {
		t.Errorf("catalog after restart = %q, %v; want etcd and team/multi", repos, err)
	}
}

// TestRefusesDamagedDir: a manifest file the registry cannot read is an
// error at start, not a registry that silently lacks it.
func TestRefusesDamagedDir(t *testing.T) {
	dir := t.TempDir()
	r := start(t, dir)
	img, _ := random.Image(16, 1)
	if err := remote.Write(ref(t, r, "x:1"), img); err != nil {
		t.Fatal(err)
	}
	r.Close()
	files, _ := os.ReadDir(dir + "/manifests")
	if len(files) == 0 {
		t.Fatal("no manifest file written")
	}
	if err := os.WriteFile(dir+"/manifests/"+files[0].Name(), []byte("{"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Start("127.0.0.1:0", Config{Dir: dir}); err == nil || !strings.Contains(err.Error(), "not a manifest record") {
		t.Errorf("Start on a damaged dir: %v", err)
	}
}

func TestGuestWiring(t *testing.T) {
	if got, want := GuestForward(41234), "guestfwd=tcp:10.0.2.100:5000-cmd:socat - TCP:127.0.0.1:41234"; got != want {
		t.Errorf("GuestForward = %q, want %q", got, want)
	}
	if strings.Contains(GuestForward(1), ",") {
		t.Error("GuestForward has a comma, which QEMU's option syntax would split on")
	}
	if got, want := HostsLine(), "10.0.2.100 registry"; got != want {
		t.Errorf("HostsLine = %q, want %q", got, want)
	}
	if got := GuestRef(); got != "registry:5000" {
		t.Errorf("GuestRef = %q", got)
	}
}

// TestForwardCommand runs ForwardCommand as QEMU's user-mode network does
// for a guest connection (its words split on spaces, the connection as
// standard input and output) and speaks HTTP to the registry through it.
func TestForwardCommand(t *testing.T) {
	if _, err := exec.LookPath("socat"); err != nil {
		t.Fatal("socat missing: run scripts/deps.sh")
	}
	r := start(t, t.TempDir())
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	child := os.NewFile(uintptr(fds[0]), "guest-conn")
	ours := os.NewFile(uintptr(fds[1]), "qemu-side")
	args := strings.Fields(ForwardCommand(r.Port()))
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdin, cmd.Stdout = child, child
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	child.Close()
	defer cmd.Wait()
	conn, err := net.FileConn(ours)
	ours.Close()
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, "GET /v2/ HTTP/1.1\r\nHost: registry:5000\r\nConnection: close\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("response through %q: %v", ForwardCommand(r.Port()), err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET /v2/ through the forward: %s, want 200", resp.Status)
	}
}

func TestValidRef(t *testing.T) {
	tests := []struct {
		repo, ref string
		want      bool
	}{
		{"etcd", "3.5", true},
		{"team/multi", "latest", true},
		{"a.b/c__d/e-f", "v1_2", true},
		{"etcd", "sha256:" + strings.Repeat("a", 64), true},
		{"Etcd", "1", false},
		{"etcd", "", false},
		{"", "1", false},
		{"etcd/", "1", false},
		{"a/../b", "1", false},
		{"etcd", ".hidden", false},
		{"etcd", "a?b", false},
		{"etcd", "a%2Fb", false},
		{"etcd", strings.Repeat("a", 129), false},
	}
	for _, tt := range tests {
		if got := validRef(tt.repo, tt.ref); got != tt.want {
			t.Errorf("validRef(%q, %q) = %v, want %v", tt.repo, tt.ref, got, tt.want)
		}
	}
}

// TestRefusesOddNames: a push under a name outside the spec's grammar is
// refused before it reaches the registry or its journal, so no record can
// keep a restarted registry from starting.
func TestRefusesOddNames(t *testing.T) {
	dir := t.TempDir()
	r := start(t, dir)
	for _, path := range []string{"/v2/Etcd/manifests/1", "/v2/etcd/manifests/a%3Fb", "/v2/etcd/manifests/.x"} {
		req, _ := http.NewRequest(http.MethodPut, "http://"+r.Addr()+path, strings.NewReader("{}"))
		req.Header.Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("PUT %s: %s, want 400", path, resp.Status)
		}
	}
	r.Close()
	if files, _ := os.ReadDir(dir + "/manifests"); len(files) != 0 {
		t.Errorf("%d manifest records after refused pushes", len(files))
	}
	start(t, dir)
}

// FuzzManifestRef: any request path splits without panic, and what is
// accepted as a repository and reference maps to one plain record file
// and replays to the same path.
func FuzzManifestRef(f *testing.F) {
	for _, s := range []string{"/v2/etcd/manifests/3.5", "/v2/a/b/manifests/sha256:00", "/v2//manifests/x", "/v2/manifests/x", "v2/a/manifests/b", "/v2/a/blobs/x", "/v2/a/manifests/"} {
		f.Add(s)
	}
	j := &journal{dir: "/j"}
	f.Fuzz(func(t *testing.T, path string) {
		repo, ref, ok := manifestRef(path)
		if !ok || !validRef(repo, ref) {
			return
		}
		if got := "/v2/" + repo + "/manifests/" + ref; got != path {
			t.Fatalf("manifestRef(%q) = %q, %q: rebuilds as %q", path, repo, ref, got)
		}
		if p := j.file(repo, ref); !strings.HasPrefix(p, "/j/") || strings.Count(p, "/") != 2 {
			t.Fatalf("record file %q for %q %q", p, repo, ref)
		}
	})
}

// TestPassword is the attack of another task on the same bot, which
// shares the bot's loopback: with the task registry's port but not its
// password it can neither push an image the task's cluster would run nor
// pull what the task pushed. With the password, push and pull work.
func TestPassword(t *testing.T) {
	r, err := Start("127.0.0.1:0", Config{Dir: t.TempDir(), Password: "s3cret"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	img, err := random.Image(1024, 1)
	if err != nil {
		t.Fatal(err)
	}
	owner := remote.WithAuth(&authn.Basic{Username: User, Password: "s3cret"})
	if err := remote.Write(ref(t, r, "app:1"), img, owner); err != nil {
		t.Fatalf("push with the password: %v", err)
	}
	if _, err := remote.Image(ref(t, r, "app:1"), owner); err != nil {
		t.Fatalf("pull with the password: %v", err)
	}
	for _, tt := range []struct {
		name string
		opts []remote.Option
	}{
		{"no credentials", nil},
		{"a wrong password", []remote.Option{remote.WithAuth(&authn.Basic{Username: User, Password: "s3cre"})}},
		{"another user", []remote.Option{remote.WithAuth(&authn.Basic{Username: "admin", Password: "s3cret"})}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			evil, _ := random.Image(512, 1)
			if err := remote.Write(ref(t, r, "app:1"), evil, tt.opts...); err == nil {
				t.Error("pushed over the task's image")
			}
			if _, err := remote.Image(ref(t, r, "app:1"), tt.opts...); err == nil {
				t.Error("pulled the task's image")
			}
		})
	}
	got, err := remote.Image(ref(t, r, "app:1"), owner)
	if err != nil {
		t.Fatal(err)
	}
	if digest(t, got) != digest(t, img) {
		t.Error("the task's image was replaced")
	}
	req, _ := http.NewRequest("GET", "http://"+r.Addr()+"/v2/", nil)
	req.Header.Set("Authorization", BasicAuth("s3cret"))
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Errorf("GET /v2/ with BasicAuth: %v %v", resp, err)
	}
}
