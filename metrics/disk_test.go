package metrics

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"golang.org/x/sys/unix"
)

func TestDisk(t *testing.T) {
	dir := t.TempDir()
	reg := prometheus.NewRegistry()
	// Two directories register side by side.
	reg.MustRegister(NewDisk("images", dir), NewDisk("work", dir))
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	size := float64(st.Blocks) * float64(st.Bsize)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			dir := m.GetLabel()[0].GetValue()
			if got[dir] == nil {
				got[dir] = map[string]float64{}
			}
			got[dir][mf.GetName()] = m.GetGauge().GetValue()
		}
	}
	for _, name := range []string{"images", "work"} {
		free, sz := got[name]["turtles_disk_free_bytes"], got[name]["turtles_disk_size_bytes"]
		if sz != size || free <= 0 || free > sz {
			t.Errorf("dir %s: free %v of %v bytes, want the size %v and 0 < free <= size", name, free, sz, size)
		}
	}
	if n := testutil.CollectAndCount(NewDisk("images", dir)); n != 2 {
		t.Errorf("collected %d metrics, want 2", n)
	}
}

func TestDiskMissing(t *testing.T) {
	gone := filepath.Join(t.TempDir(), "gone")
	os.Remove(gone)
	if n := testutil.CollectAndCount(NewDisk("images", gone)); n != 0 {
		t.Errorf("collected %d metrics of a missing directory, want none", n)
	}
}
