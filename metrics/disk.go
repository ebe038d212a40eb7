package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"
)

// Disk collects, at scrape time, the free and total bytes of the file
// system that holds one directory of turtles (the image cache, the bots'
// work directory), labelled with what the directory is for.
type Disk struct {
	path       string
	free, size *prometheus.Desc
}

// NewDisk returns the collector of the file system of path, labelled
// dir=name ("images", "work"). Collectors of several names register
// side by side.
func NewDisk(name, path string) *Disk {
	labels := prometheus.Labels{"dir": name}
	return &Disk{
		path: path,
		free: prometheus.NewDesc("turtles_disk_free_bytes",
			"Bytes free for turtles (not reserved for root) on the file system of a directory turtles fills, by what the directory is for.", nil, labels),
		size: prometheus.NewDesc("turtles_disk_size_bytes",
			"Size in bytes of the file system of a directory turtles fills, by what the directory is for.", nil, labels),
	}
}

// Describe implements prometheus.Collector.
func (d *Disk) Describe(ch chan<- *prometheus.Desc) {
	ch <- d.free
	ch <- d.size
}

// Collect implements prometheus.Collector. A directory that cannot be
// read (not made yet) gives no sample: no value is better than a wrong
// one, and failing the scrape would hide every other metric.
func (d *Disk) Collect(ch chan<- prometheus.Metric) {
	var st unix.Statfs_t
	if err := unix.Statfs(d.path, &st); err != nil {
		return
	}
	bs := float64(st.Bsize)
	ch <- prometheus.MustNewConstMetric(d.free, prometheus.GaugeValue, float64(st.Bavail)*bs)
	ch <- prometheus.MustNewConstMetric(d.size, prometheus.GaugeValue, float64(st.Blocks)*bs)
}
