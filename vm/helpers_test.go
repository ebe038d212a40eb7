package vm

import (
	"archive/tar"
	"io"
	"strconv"
	"time"

	"github.com/turtles-ci/turtles/image"
)

// testMirror is the Debian mirror the test image is built from.
const testMirror = "http://deb.debian.org/debian"

// testConfig is a complete Config for img in dir, sized as cmd/turtles
// sizes a machine whose context does not say.
func testConfig(img *image.Manifest, dir string) Config {
	return Config{
		Image: img, Dir: dir, CPUs: 2, MemoryMB: 1024,
		BootTimeout: 5 * time.Minute, StopGrace: 3 * time.Second, QEMU: "qemu-system-x86_64",
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

func newTestTar(w io.Writer) func(name, content string) {
	tw := tar.NewWriter(w)
	return func(name, content string) {
		tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(content)), Typeflag: tar.TypeReg})
		io.WriteString(tw, content)
		tw.Flush()
	}
}
