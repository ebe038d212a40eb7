package vm

import (
	"archive/tar"
	"io"
	"strconv"
)

func itoa(i int) string { return strconv.Itoa(i) }

func newTestTar(w io.Writer) func(name, content string) {
	tw := tar.NewWriter(w)
	return func(name, content string) {
		tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(content)), Typeflag: tar.TypeReg})
		io.WriteString(tw, content)
		tw.Flush()
	}
}
