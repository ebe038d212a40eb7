package vm

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"errors"
	"log/slog"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/turtles-ci/turtles/syncio"
)

// TestHoldResume holds a warm-started and a cold-booted machine whose
// "test" wrote a file and left a process running, resumes each from its
// archive in another directory, and finds both there. Nothing is left of
// any machine afterwards.
func TestHoldResume(t *testing.T) {
	img := debianImage(t)
	// Where turtles serve --images-dir keeps the image's warm states: made
	// once, shared with the end-to-end tests.
	warm := filepath.Join(filepath.Dir(img.Disk), "warm")
	for _, tc := range []struct {
		name string
		warm bool
	}{{"warm", true}, {"cold", false}} {
		t.Run(tc.name, func(t *testing.T) {
			dir, other := t.TempDir(), t.TempDir()
			ctx := context.Background()
			var console syncio.Buffer
			cfg := testConfig(img, dir)
			cfg.Name, cfg.Console, cfg.Log = "held", &console, slog.Default()
			if tc.warm {
				cfg.Warm = warm
			}
			m, err := Start(ctx, cfg)
			if err != nil {
				t.Fatalf("%v\n%s", err, console.String())
			}
			t.Cleanup(func() { m.Stop(ctx) })
			if m.Warm != tc.warm {
				t.Fatalf("started warm %v, want %v", m.Warm, tc.warm)
			}
			// A port on the host's loopback, which QEMU's user-mode network
			// shows the guest as 10.0.2.2: a task's machine reaches it, a
			// resumed one must not (it ran someone's test).
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			reach := `timeout 10 bash -c 'exec 3<>/dev/tcp/10.0.2.2/` + itoa(l.Addr().(*net.TCPAddr).Port) + `' 2>/dev/null && echo reached the host || echo isolated`
			out, err := m.Output(ctx, `echo written-before-hold > /root/evidence
nohup sleep 1000 >/dev/null 2>&1 &
echo $! > /root/sleep.pid
`+reach)
			if err != nil {
				t.Fatal(err)
			}
			if out != "reached the host\n" {
				t.Fatalf("the task's machine: %q, want it to reach the host (the barrier of the resumed one's isolation)", out)
			}
			archive := filepath.Join(t.TempDir(), "held.tar.gz")
			began := time.Now()
			meta, err := m.Hold(ctx, archive, 2<<30, "debian-12")
			if err != nil {
				t.Fatal(err)
			}
			fi, err := os.Stat(archive)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("held in %s: %d MiB compressed (memory %d MiB, overlay %d MiB), seed %v", time.Since(began).Round(time.Millisecond),
				fi.Size()>>20, meta.MemorySize>>20, meta.OverlaySize>>20, meta.Seed)
			if meta.Seed == tc.warm {
				t.Errorf("held with the seed disk %v, want %v", meta.Seed, !tc.warm)
			}
			if err := m.Stop(ctx); err != nil {
				t.Fatal(err)
			}
			if qemuIn(dir) != nil {
				t.Errorf("a qemu of the held machine still runs: %v", qemuIn(dir))
			}
			if left, _ := os.ReadDir(dir); len(left) != 0 {
				t.Errorf("left behind by the held machine: %v", left)
			}

			f, err := os.Open(archive)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			h, err := Unpack(f, other, "debug", 4<<30)
			if err != nil {
				t.Fatal(err)
			}
			var resumed syncio.Buffer
			began = time.Now()
			r, err := h.Resume(ctx, ResumeConfig{Image: img, QEMU: "qemu-system-x86_64", Timeout: 2 * time.Minute, Console: &resumed, Log: slog.Default()})
			if err != nil {
				t.Fatalf("resume: %v\n%s", err, resumed.String())
			}
			t.Logf("resumed in %s: %+v", time.Since(began).Round(time.Millisecond), r.Timing)
			out, err = r.Output(ctx, `cat /root/evidence; ps -o args= -p "$(cat /root/sleep.pid)"
`+reach)
			if err != nil {
				t.Fatal(err)
			}
			if out != "written-before-hold\nsleep 1000\nisolated\n" {
				t.Errorf("in the resumed machine: %q, want the file, the sleep, and no way to the host", out)
			}
			if err := r.Stop(ctx); err != nil {
				t.Fatal(err)
			}
			if qemuIn(other) != nil {
				t.Errorf("a qemu of the resumed machine still runs: %v", qemuIn(other))
			}
			if left, _ := os.ReadDir(other); len(left) != 0 {
				t.Errorf("left behind in the debug directory: %v", left)
			}
		})
	}
}

// TestHoldLimit: an archive that grows past the limit is a
// HoldTooLargeError that says the limit, and leaves no file.
func TestHoldLimit(t *testing.T) {
	dir := t.TempDir()
	big := filepath.Join(dir, "memory")
	b := make([]byte, 3<<20)
	rand.Read(b) // incompressible
	if err := os.WriteFile(big, b, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		limit   int64
		tooMany bool
	}{{1 << 20, true}, {8 << 20, false}} {
		path := filepath.Join(dir, "held.tar.gz")
		err := writeHold(path, tc.limit, HoldMeta{}, func(add func(name, path string) error) error { return add(holdMemory, big) })
		var tl *HoldTooLargeError
		if got := errors.As(err, &tl); got != tc.tooMany {
			t.Errorf("limit %d: %v, want too large %v", tc.limit, err, tc.tooMany)
		}
		_, serr := os.Stat(path)
		if tc.tooMany && !errors.Is(serr, os.ErrNotExist) || !tc.tooMany && serr != nil {
			t.Errorf("limit %d: the archive: %v", tc.limit, serr)
		}
		if tc.tooMany && !strings.Contains(err.Error(), "over the limit of 1 MiB") {
			t.Errorf("limit %d: %q does not say the limit", tc.limit, err)
		}
		os.Remove(path)
	}
}

// goodMeta is the hold.json of a machine turtles could have held.
var goodMeta = `{"format":1,"cpus":2,"memory_mb":1024,"accel":"tcg","mac":"52:54:00:12:34:56","user":"root","disk_sha256":"` +
	strings.Repeat("ab", 32) + `"}`

// TestUnpackRefuses: an archive with a file it does not know, or without
// one it needs, is refused, and nothing is left.
func TestUnpackRefuses(t *testing.T) {
	for _, tc := range []struct {
		name  string
		files map[string]string
		want  string
	}{
		{"unknown file", map[string]string{"../evil": "x"}, "unexpected entry"},
		{"no memory", map[string]string{holdMetaFile: goodMeta, keyFile: "k", holdOverlay: "o"}, "no memory"},
		{"an ssh option for a user", map[string]string{holdMetaFile: strings.Replace(goodMeta, `"root"`, `"-oProxyCommand=sh"`, 1),
			keyFile: "k", holdOverlay: "o", holdMemory: "m"}, "bad user"},
		{"a QEMU option in the MAC", map[string]string{holdMetaFile: strings.Replace(goodMeta, `52:54:00:12:34:56`, `52:54:00:12:34:56,romfile=/etc/shadow`, 1),
			keyFile: "k", holdOverlay: "o", holdMemory: "m"}, "bad mac"},
		{"other format", map[string]string{holdMetaFile: `{"format":99}`, keyFile: "k", holdOverlay: "o", holdMemory: "m"}, "format 99"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "m")
			var buf bytes.Buffer
			zw := gzip.NewWriter(&buf)
			add := newTestTar(zw)
			for _, name := range slices.Sorted(maps.Keys(tc.files)) {
				add(name, tc.files[name])
			}
			zw.Close()
			_, err := Unpack(&buf, dir, "x", 1<<20)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Unpack: %v, want an error with %q", err, tc.want)
			}
			if left, _ := os.ReadDir(dir); len(left) != 0 {
				t.Errorf("left behind: %v", left)
			}
		})
	}
}

// FuzzUnpack: a held VM comes from a server; whatever it is, Unpack
// does not panic, writes only the files it knows into the machine's
// directory, and leaves nothing when it refuses.
func FuzzUnpack(f *testing.F) {
	var ok bytes.Buffer
	zw := gzip.NewWriter(&ok)
	add := newTestTar(zw)
	add(holdMetaFile, goodMeta)
	add(keyFile, "k")
	add(holdOverlay, "o")
	add(holdMemory, "m")
	zw.Close()
	f.Add(ok.Bytes())
	f.Add([]byte("not gzip"))
	f.Fuzz(func(t *testing.T, b []byte) {
		dir := t.TempDir()
		h, err := Unpack(bytes.NewReader(b), dir, "m", 1<<20)
		if err != nil {
			if left, _ := os.ReadDir(dir); len(left) != 0 {
				t.Fatalf("a refused archive left %v", left)
			}
			return
		}
		entries, _ := os.ReadDir(h.Dir)
		for _, e := range entries {
			switch e.Name() {
			case holdMetaFile, keyFile, holdSeed, holdOverlay, holdMemory, ownerFile:
			default:
				t.Fatalf("unpacked an unknown file %q", e.Name())
			}
		}
	})
}
