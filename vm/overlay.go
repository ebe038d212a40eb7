package vm

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
)

// diskFormat tells qcow2 from raw by the qcow2 magic, so that the overlay
// names its backing format (qemu refuses to probe it, for safety).
func diskFormat(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	magic := make([]byte, 4)
	if _, err := io.ReadFull(f, magic); err != nil {
		return "", fmt.Errorf("read disk %s: %w", path, err)
	}
	if bytes.Equal(magic, []byte("QFI\xfb")) {
		return "qcow2", nil
	}
	return "raw", nil
}

// CreateOverlay makes a qcow2 file at path whose reads fall through to
// base and whose writes stay in it: the base is never written. It costs
// the same whatever base's size (qemu-img writes a header, no data).
func CreateOverlay(ctx context.Context, base, path string) error {
	abs, err := filepath.Abs(base)
	if err != nil {
		return err
	}
	format, err := diskFormat(abs)
	if err != nil {
		return err
	}
	out, err := exec.CommandContext(ctx, "qemu-img", "create", "-q", "-f", "qcow2",
		"-F", format, "-b", abs, path).CombinedOutput()
	if err != nil {
		return fmt.Errorf("create overlay on %s: %w: %s", base, err, bytes.TrimSpace(out))
	}
	return nil
}
