package debian

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// sweepBuilds removes the work directories (.build-*) that builds killed
// before their own cleanup left in dir, unmounting first what they left
// mounted: debootstrap's /proc in its tree, derive's loop mount. The
// caller holds dir's lock, so no build is running there.
func sweepBuilds(ctx context.Context, dir string, out io.Writer, log *slog.Logger) {
	left, _ := filepath.Glob(filepath.Join(dir, ".build-*"))
	if len(left) == 0 {
		return
	}
	mounts := mountPoints()
	for _, w := range left {
		var under []string
		for _, m := range mounts {
			if m == w || strings.HasPrefix(m, w+"/") {
				under = append(under, m)
			}
		}
		// Deepest first: root/proc before root.
		sort.Slice(under, func(i, j int) bool { return len(under[i]) > len(under[j]) })
		ok := true
		for _, m := range under {
			if err := run(context.WithoutCancel(ctx), out, "umount", m); err != nil {
				log.Warn("image build: cannot unmount what a killed build left", "mount", m, "err", err)
				ok = false
			}
		}
		// Never remove through a mount: it would reach into what is
		// mounted there.
		if ok {
			log.Info("image build: removing what a killed build left", "dir", w, "unmounted", len(under))
			os.RemoveAll(w)
		}
	}
}

// mountPoints lists the mount points of this process's mount namespace.
func mountPoints() []string {
	f, err := os.Open("/proc/self/mounts")
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 {
			out = append(out, unescapeMount(fields[1]))
		}
	}
	return out
}

// unescapeMount decodes the octal escapes (\040 for a space) of a path
// in /proc/self/mounts.
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
