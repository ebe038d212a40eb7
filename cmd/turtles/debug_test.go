package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/turtles-ci/turtles/image"
	"github.com/turtles-ci/turtles/state"
	"github.com/turtles-ci/turtles/vm"
)

// TestHeldVMURL: the held VM of a task page's attempt, or of its last
// attempt, found through the API; what is not a task page is refused.
func TestHeldVMURL(t *testing.T) {
	sha := strings.Repeat("ab", 20)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/ci/api/v1/tasks/0123456789abcdef" {
			http.NotFound(w, r)
			return
		}
		json.NewEncoder(w).Encode(state.Task{ID: "0123456789abcdef", Repo: "octo/hello", SHA: sha, Context: "debian/x",
			Attempts: []state.Attempt{{Number: 1}, {Number: 2}}})
	}))
	defer srv.Close()
	for _, tc := range []struct {
		name, url, want, wantErr string
	}{
		{name: "attempt", url: srv.URL + "/ci/tasks/0123456789abcdef/1", want: srv.URL + "/ci/logs/octo/hello/" + sha + "/debian~x/1/held-vm.tar.gz"},
		{name: "last attempt", url: srv.URL + "/ci/tasks/0123456789abcdef", want: srv.URL + "/ci/logs/octo/hello/" + sha + "/debian~x/2/held-vm.tar.gz"},
		{name: "unknown task", url: srv.URL + "/ci/tasks/ffffffffffffffff/1", wantErr: "not found"},
		{name: "not a task page", url: srv.URL + "/ci/history", wantErr: "is not the URL of a task's page"},
		{name: "not http", url: "file:///etc/passwd", wantErr: "is not the URL of a task's page"},
		{name: "bad attempt", url: srv.URL + "/ci/tasks/0123456789abcdef/x", wantErr: "the attempt must be a number"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := heldVMURL(context.Background(), tc.url)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("heldVMURL(%q) = %q, %v; want an error with %q", tc.url, got, err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Errorf("heldVMURL(%q) = %q, %v; want %q", tc.url, got, err, tc.want)
			}
		})
	}
}

// TestHeldImage: the image is found by its disk's sha256 among the
// manifests of the images directory; a missing one is an error that
// names it and says how to get it.
func TestHeldImage(t *testing.T) {
	dir := t.TempDir()
	disk := filepath.Join(dir, "base.qcow2")
	if err := os.WriteFile(disk, []byte("a disk"), 0o644); err != nil {
		t.Fatal(err)
	}
	sum, err := image.HashFile(disk)
	if err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(dir, "other.qcow2")
	os.WriteFile(other, []byte("another disk"), 0o644)
	if err := image.Write(filepath.Join(dir, "other.json"), &image.Manifest{Name: "other", Disk: "other.qcow2"}); err != nil {
		t.Fatal(err)
	}
	if err := image.Write(filepath.Join(dir, "debian-12.json"), &image.Manifest{Name: "debian-12", Disk: "base.qcow2", SHA256: sum}); err != nil {
		t.Fatal(err)
	}
	meta := vm.HoldMeta{Image: "debian-12", Ref: "debian-12", DiskSHA256: sum}
	m, err := heldImage(meta, dir, "")
	if err != nil || m.Disk != disk {
		t.Fatalf("heldImage = %+v, %v; want the manifest of %s", m, err, disk)
	}
	if _, err := heldImage(meta, dir, "other"); err == nil || !strings.Contains(err.Error(), "the held machine's "+sum) {
		t.Errorf("--image naming another image: %v, want refused", err)
	}
	pin := "debian-12-" + strings.Repeat("cd", 32)
	missing := vm.HoldMeta{Image: "debian-12", Ref: pin, DiskSHA256: strings.Repeat("ef", 32)}
	_, err = heldImage(missing, dir, "")
	for _, want := range []string{"debian-12", strings.Repeat("ef", 32), "turtles image pull " + pin} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("a missing image: %v, want it to say %q", err, want)
		}
	}
}
