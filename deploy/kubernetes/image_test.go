package kubernetes_test

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/turtles-ci/turtles/release/ociimage"
)

// root is the repository, where the Dockerfile is.
const root = "../.."

// dockerfile is the parsed Dockerfile: instructions with continuation
// lines joined, comments dropped.
type dockerfile []instruction

type instruction struct {
	cmd  string // FROM, RUN, COPY, ...
	args string
}

func parseDockerfile(t *testing.T, data string) dockerfile {
	t.Helper()
	var out dockerfile
	var cur strings.Builder
	for line := range strings.Lines(data) {
		line = strings.TrimRight(line, "\r\n")
		if trimmed := strings.TrimSpace(line); strings.HasPrefix(trimmed, "#") || trimmed == "" && cur.Len() == 0 {
			continue
		}
		if s, ok := strings.CutSuffix(line, `\`); ok {
			cur.WriteString(s + " ")
			continue
		}
		cur.WriteString(line)
		cmd, args, _ := strings.Cut(strings.TrimSpace(cur.String()), " ")
		out = append(out, instruction{strings.ToUpper(cmd), strings.Join(strings.Fields(args), " ")})
		cur.Reset()
	}
	if cur.Len() > 0 {
		t.Fatalf("Dockerfile ends inside a continued line: %q", cur.String())
	}
	return out
}

func (d dockerfile) all(cmd string) []string {
	var out []string
	for _, in := range d {
		if in.cmd == cmd {
			out = append(out, in.args)
		}
	}
	return out
}

// The image the manifests run is built by the Dockerfile at the root.
// Without a container engine here, the test checks what can be checked:
// the build stage's Go matches go.mod and builds a static binary from a
// context that .dockerignore leaves complete, the binary is the
// ENTRYPOINT (the manifests give only args), and the runtime packages
// provide every program turtles runs.
func TestDockerfile(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(root, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	d := parseDockerfile(t, string(data))

	froms := d.all("FROM")
	if len(froms) != 2 {
		t.Fatalf("FROM %q: want a build stage and a runtime stage", froms)
	}
	gomod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	goVersion := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindSubmatch(gomod)
	if goVersion == nil || !strings.HasPrefix(froms[0], "golang:"+string(goVersion[1])+"-") || !strings.HasSuffix(froms[0], " AS build") {
		t.Errorf("build stage FROM %q: want golang:%s-... AS build (go.mod)", froms[0], goVersion[1])
	}
	debian := strings.TrimSuffix(froms[0][strings.Index(froms[0], "-")+1:], " AS build") // golang:1.26-bookworm: bookworm
	if !strings.HasPrefix(froms[1], "debian:"+debian) {
		t.Errorf("runtime FROM %q: want the build stage's Debian (%s)", froms[1], debian)
	}

	var build string
	for _, r := range d.all("RUN") {
		if strings.Contains(r, "go build") {
			build = r
		}
	}
	for _, want := range []string{"CGO_ENABLED=0", "-trimpath", "-X main.version=", "-o /out/turtles", "./cmd/turtles"} {
		if !strings.Contains(build, want) {
			t.Errorf("go build %q lacks %s", build, want)
		}
	}
	if !slices.Contains(d.all("COPY"), "--from=build /out/turtles /usr/local/bin/turtles") {
		t.Errorf("COPY %q: want the binary copied to /usr/local/bin/turtles", d.all("COPY"))
	}
	var entry []string
	if e := d.all("ENTRYPOINT"); len(e) != 1 || json.Unmarshal([]byte(e[0]), &entry) != nil || !slices.Equal(entry, []string{"/usr/local/bin/turtles"}) {
		t.Errorf("ENTRYPOINT %q: want [\"/usr/local/bin/turtles\"] in exec form", e)
	}

	t.Run("packages", func(t *testing.T) { checkPackages(t, d) })
	t.Run("same as make image", func(t *testing.T) { checkSameAsOCIImage(t, d) })
	t.Run("context", func(t *testing.T) {
		checkContext(t, build)
	})
}

// aptInstalled are the packages the Dockerfile's runtime stage installs.
func aptInstalled(d dockerfile) []string {
	var installed []string
	for _, r := range d.all("RUN") {
		if _, after, ok := strings.Cut(r, "apt-get install"); ok {
			rest, _, _ := strings.Cut(after, "&&")
			for _, f := range strings.Fields(rest) {
				if !strings.HasPrefix(f, "-") {
					installed = append(installed, f)
				}
			}
		}
	}
	return installed
}

// checkSameAsOCIImage keeps the Dockerfile and `make image`
// (release/ociimage) equivalent: the same Debian release, the same
// packages, the same non-root account and user, entry point and work
// directory.
func checkSameAsOCIImage(t *testing.T, d dockerfile) {
	got, want := slices.Sorted(slices.Values(aptInstalled(d))), slices.Sorted(slices.Values(ociimage.Packages))
	if !slices.Equal(got, want) {
		t.Errorf("the Dockerfile installs %q, make image (ociimage.Packages) %q", got, want)
	}
	if froms := d.all("FROM"); len(froms) < 2 || !strings.HasPrefix(froms[len(froms)-1], "debian:"+ociimage.Suite) {
		t.Errorf("runtime FROM %q: want debian:%s like make image", froms, ociimage.Suite)
	}
	user := fmt.Sprintf("%d:%d", ociimage.UID, ociimage.GID)
	if u := d.all("USER"); len(u) != 1 || u[0] != user {
		t.Errorf("USER %q, want %s (ociimage.UID:GID)", u, user)
	}
	if w := d.all("WORKDIR"); len(w) == 0 || w[len(w)-1] != ociimage.Home {
		t.Errorf("last WORKDIR %q, want %s", w, ociimage.Home)
	}
	var account string
	for _, r := range d.all("RUN") {
		if strings.Contains(r, "useradd") {
			account = r
		}
	}
	for _, want := range []string{fmt.Sprintf("groupadd --gid %d %s", ociimage.GID, ociimage.User),
		fmt.Sprintf("useradd --uid %d --gid %d --home-dir %s", ociimage.UID, ociimage.GID, ociimage.Home),
		"--groups kvm " + ociimage.User} {
		if !strings.Contains(account, want) {
			t.Errorf("the account's RUN %q lacks %q", account, want)
		}
	}
	if !slices.Contains(d.all("COPY"), "--from=build /out/turtles "+ociimage.Binary) {
		t.Errorf("COPY %q: want the binary at %s, as make image puts it", d.all("COPY"), ociimage.Binary)
	}
}

// checkPackages asks dpkg on this (Debian) machine which package provides
// each program turtles runs, and checks the runtime stage installs it.
func checkPackages(t *testing.T, d dockerfile) {
	if _, err := exec.LookPath("dpkg"); err != nil {
		t.Skip("dpkg missing: not Debian")
	}
	installed := aptInstalled(d)
	// qemu: vm; git: git (ssh:// remotes need ssh); TLS to forges and
	// stores needs the CA bundle.
	for _, prog := range []string{"qemu-system-x86_64", "qemu-img", "git", "ssh", "bwrap", "/etc/ssl/certs/ca-certificates.crt"} {
		p := prog
		if !filepath.IsAbs(p) {
			var err error
			if p, err = exec.LookPath(prog); err != nil {
				t.Errorf("%s is not installed here (scripts/deps.sh): cannot tell its package", prog)
				continue
			}
		}
		if resolved, err := filepath.EvalSymlinks(p); err == nil {
			p = resolved
		}
		out, err := exec.Command("dpkg", "-S", p).Output()
		if err != nil {
			if prog == "/etc/ssl/certs/ca-certificates.crt" {
				out = []byte("ca-certificates: " + p) // generated by update-ca-certificates, owned by none
			} else {
				t.Errorf("dpkg -S %s: %v", p, err)
				continue
			}
		}
		pkg, _, _ := strings.Cut(string(out), ":")
		if !slices.Contains(installed, pkg) {
			t.Errorf("%s comes from package %s, which the image does not install (it installs %q)", prog, pkg, installed)
		}
	}
}

// checkContext copies what .dockerignore lets into the build context and
// runs the Dockerfile's go build there: a file the build needs must not
// be ignored.
func checkContext(t *testing.T, build string) {
	ignore, err := os.ReadFile(filepath.Join(root, ".dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	var patterns []string
	for line := range strings.Lines(string(ignore)) {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			patterns = append(patterns, line)
		}
	}
	ctx := t.TempDir()
	n := 0
	err = filepath.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if rel == "." {
			return nil
		}
		if ignored(patterns, filepath.ToSlash(rel)) {
			if e.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		dst := filepath.Join(ctx, rel)
		if e.IsDir() {
			return os.MkdirAll(dst, 0o755)
		}
		if !e.Type().IsRegular() {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		n++
		return os.WriteFile(dst, b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, gone := range []string{".git", "docs", "README.md"} {
		if _, err := os.Stat(filepath.Join(ctx, gone)); err == nil {
			t.Errorf("%s is in the build context; .dockerignore should leave it out", gone)
		}
	}
	// The Dockerfile's command, with the version filled in as ARG does,
	// and -n: it loads every package and embedded file and checks the
	// flags, but does not compile (a -trimpath build misses the test
	// cache and takes minutes on 2 cores).
	cmdline := strings.ReplaceAll(build, "${VERSION}", "test")
	cmdline = strings.Replace(cmdline, "go build", "go build -n", 1)
	cmdline = strings.ReplaceAll(cmdline, "/out/turtles", filepath.Join(t.TempDir(), "turtles"))
	cmd := exec.Command("sh", "-c", cmdline)
	cmd.Dir = ctx
	cmd.Env = append(os.Environ(), "GOWORK=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build in the build context (%d files) failed: %v\n%s", n, err, out)
	}
}

// ignored reports whether .dockerignore patterns exclude rel (or a
// directory above it). Patterns match from the context's root, as
// Docker's do; a leading **/ matches at any depth.
func ignored(patterns []string, rel string) bool {
	parts := strings.Split(rel, "/")
	for _, pat := range patterns {
		for i := 1; i <= len(parts); i++ {
			prefix := strings.Join(parts[:i], "/")
			if sub, ok := strings.CutPrefix(pat, "**/"); ok {
				for j := range i {
					if m, _ := path.Match(sub, strings.Join(parts[j:i], "/")); m {
						return true
					}
				}
				continue
			}
			if m, _ := path.Match(pat, prefix); m {
				return true
			}
		}
	}
	return false
}
