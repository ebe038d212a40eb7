package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/turtles-ci/turtles/config"
	"github.com/turtles-ci/turtles/image"
	"github.com/turtles-ci/turtles/image/cache"
	"github.com/turtles-ci/turtles/metrics"
	"github.com/turtles-ci/turtles/store/s3"
	"github.com/turtles-ci/turtles/vm"
)

func imageOptions() []option {
	return []option{
		opt("image-mirrors", "comma-separated mirrors of pinned images: http(s)://HOST/PATH/ or s3://BUCKET/PREFIX?endpoint=URL", strs(func(s *Settings) *[]string { return &s.ImageMirrors })),
		opt("image-peers", "DNS name (and :PORT, default 8080) that resolves to every peer running 'turtles image serve', e.g. images.turtles.svc.cluster.local", str(func(s *Settings) *string { return &s.ImagePeers })),
		opt("image-max-size", "largest image (all its files) a fetch accepts, such as 64GiB: a pin names the manifest, and anyone who can push a .turtles.yaml can pin one that claims a petabyte", byteSize(func(s *Settings) *ByteSize { return &s.ImageMaxSize })),
	}
}

// imageFlags are the options of the image cache, beside images-dir.
var imageFlags = []string{"image-mirrors", "image-peers", "image-max-size"}

// imageDefaults are the defaults of imageFlags: 64 GiB is three times the
// largest image we know of in use (20 GiB), and a small share of a bot's
// disk.
func imageDefaults(s *Settings) {
	s.ImageMaxSize = 64 << 30
}

// The image cache's patience with a source (cache.Config): a mirror or
// peer that does not answer the latency probe within imageProbeTimeout is
// taken for down; one that sends nothing for imageStallTimeout while a
// file downloads is abandoned for the next.
const (
	imageProbeTimeout = 2 * time.Second
	imageStallTimeout = 30 * time.Second
)

func addImageFlags(fs *pflag.FlagSet) {
	addOptions(fs, imageFlags...)
}

// newImageCache opens the host's image cache in the images directory with
// the configured mirrors and peers.
func newImageCache(s Settings, log *slog.Logger, reg prometheus.Registerer, progress func(cache.Progress)) (*cache.Cache, error) {
	cfg := cache.Config{Dir: s.ImagesDir, MaxImageSize: int64(s.ImageMaxSize), ProbeTimeout: imageProbeTimeout, StallTimeout: imageStallTimeout,
		Log: log.With("part", "images"), Registerer: reg, Progress: progress}
	for _, m := range s.ImageMirrors {
		src, err := imageSource(s, m, log)
		if err != nil {
			return nil, err
		}
		cfg.Mirrors = append(cfg.Mirrors, src)
	}
	if s.ImagePeers != "" {
		p, err := cache.ParsePeers(s.ImagePeers)
		if err != nil {
			return nil, fmt.Errorf("--image-peers: %w", err)
		}
		cfg.Peers = p
	}
	c, err := cache.New(cfg)
	if err != nil || reg == nil {
		return c, err
	}
	// Where the cache's disk fills up, before a fetch fails for it.
	if _, err := metrics.Register(reg, metrics.NewDisk("images", s.ImagesDir)); err != nil {
		return nil, err
	}
	return c, nil
}

// imageSource turns a mirror URL into a source.
func imageSource(s Settings, u string, log *slog.Logger) (cache.Source, error) {
	if strings.HasPrefix(u, "s3://") {
		st, err := imageS3(s, u, log)
		if err != nil {
			return nil, err
		}
		return &cache.Store{Store: st, Name: redactURL(u)}, nil
	}
	return cache.NewHTTP(u)
}

// imageS3 opens an s3:// URL with the store's credentials (--s3-credentials-file
// or TURTLES_S3_*).
func imageS3(s Settings, u string, log *slog.Logger) (*s3.Store, error) {
	s.Store = u
	cfg, err := s3Config(s)
	if err != nil {
		return nil, fmt.Errorf("image mirror: %w", err)
	}
	cfg.Log = log.With("part", "images")
	return s3.New(cfg)
}

// imageID reads NAME as a pinned image: NAME-SHA256 itself, or a name that
// ./.turtles.yaml pins.
func imageID(name string) (cache.ID, error) {
	if id, err := cache.ParseID(name); err == nil {
		return id, nil
	}
	b, err := os.ReadFile(config.FileName)
	if err != nil {
		return "", fmt.Errorf("%q is not a pinned image (NAME-SHA256), and there is no %s pinning it", name, config.FileName)
	}
	c, err := config.Parse(config.FileName, b)
	if err != nil {
		return "", err
	}
	pin, ok := c.Images[name]
	if !ok {
		return "", fmt.Errorf("%q is not a pinned image (NAME-SHA256), and %s does not pin it", name, config.FileName)
	}
	return cache.ParseID(pin)
}

func imageCommand(use, short, long string, args cobra.PositionalArgs, run func(cmd *cobra.Command, args []string, s Settings, log *slog.Logger) error, flags ...string) *cobra.Command {
	cmd := &cobra.Command{
		Use: use, Short: short, Long: long, Args: args,
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := loadSettings(cmd.Flags())
			if err != nil {
				return err
			}
			return run(cmd, args, s, newLogger(s, cmd.ErrOrStderr()))
		},
	}
	addFlags(cmd.Flags(), append([]string{"data-dir", "images-dir", "log-level", "log-format"}, flags...)...)
	return cmd
}

func imagePullCmd() *cobra.Command {
	return imageCommand("pull NAME",
		"Fetch a pinned image into the images directory",
		`pull makes the pinned image NAME-SHA256 (or the pin of NAME in
./.turtles.yaml) complete in the images directory, the cache shared by the
bots of this host. It asks every mirror and peer for it at once and
downloads from the fastest that has it, verifying each file's sha256 as it
streams and resuming an interrupted download. It prints the manifest's path.`,
		cobra.ExactArgs(1),
		func(cmd *cobra.Command, args []string, s Settings, log *slog.Logger) error {
			id, err := imageID(args[0])
			if err != nil {
				return err
			}
			bar := newProgressBar(cmd.ErrOrStderr())
			c, err := newImageCache(s, log, nil, bar.update)
			if err != nil {
				return err
			}
			ctx, _, stop := signals()
			defer stop()
			path, err := c.Ensure(ctx, id)
			bar.done()
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), path)
			return nil
		}, append(imageFlags, "s3-credentials-file")...)
}

func imagePushCmd() *cobra.Command {
	var to string
	cmd := imageCommand("push NAME --to URL",
		"Upload an image to a mirror and print its pin",
		`push uploads an image to a mirror: --to http(s)://HOST/PATH/ (with PUT)
or s3://BUCKET/PREFIX?endpoint=URL. NAME is a pinned image in the images
directory, or an image as contexts name it (debian-12, a manifest's path),
which is first pinned: its files are hashed and linked into the images
directory under their hashes, with a manifest that lists them.

Files go first and the manifest last, so that a mirror never offers an
image it cannot serve; files the mirror has are skipped. It prints the pin
for .turtles.yaml:

  images:
    debian-12: debian-12-SHA256`,
		cobra.ExactArgs(1),
		func(cmd *cobra.Command, args []string, s Settings, log *slog.Logger) error {
			if to == "" {
				return errors.New("push: --to is required")
			}
			c, err := newImageCache(s, log, nil, nil)
			if err != nil {
				return err
			}
			id, err := pin(c, args[0], s.ImagesDir)
			if err != nil {
				return err
			}
			var t cache.Target
			if strings.HasPrefix(to, "s3://") {
				st, err := imageS3(s, to, log)
				if err != nil {
					return err
				}
				t = &cache.StoreTarget{Store: st, Name: redactURL(to)}
			} else {
				h, err := cache.NewHTTP(to)
				if err != nil {
					return err
				}
				t = &cache.HTTPTarget{HTTP: *h}
			}
			ctx, _, stop := signals()
			defer stop()
			if err := c.Push(ctx, id, t); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "images:\n  %s: %s\n", id.Name(), id)
			return nil
		}, "s3-credentials-file")
	cmd.Flags().StringVar(&to, "to", "", "mirror: http(s)://HOST/PATH/ or s3://BUCKET/PREFIX?endpoint=URL")
	return cmd
}

// pin returns the pinned image ref names, pinning it first unless it is
// one already.
func pin(c *cache.Cache, ref, dir string) (cache.ID, error) {
	if id, err := cache.ParseID(ref); err == nil && c.Has(id) {
		return id, nil
	}
	m, err := image.Resolve(ref, dir)
	if err != nil {
		return "", err
	}
	manifest, err := manifestPath(ref, dir, m)
	if err != nil {
		return "", err
	}
	return c.Import(manifest)
}

func imagePinCmd() *cobra.Command {
	return imageCommand("pin NAME",
		"Pin a built image in the images directory and print its pin",
		`pin hashes the files of an image as contexts name it (debian-12, a
manifest's path, a disk's path), links them into the images directory under
their hashes with a manifest that lists them, and prints the pin for
.turtles.yaml. 'turtles image serve' then offers it to peers; 'turtles
image push' uploads it to a mirror (and pins it first, too).`,
		cobra.ExactArgs(1),
		func(cmd *cobra.Command, args []string, s Settings, log *slog.Logger) error {
			c, err := newImageCache(s, log, nil, nil)
			if err != nil {
				return err
			}
			id, err := pin(c, args[0], s.ImagesDir)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "images:\n  %s: %s\n", id.Name(), id)
			return nil
		})
}

// manifestPath is the manifest of an image that Resolve found; a bare
// disk (a cloud image) gets one written beside it.
func manifestPath(ref, dir string, m *image.Manifest) (string, error) {
	if strings.HasSuffix(ref, ".json") {
		return ref, nil
	}
	if !strings.Contains(ref, "/") {
		return filepath.Join(dir, ref+".json"), nil
	}
	tmp, err := os.CreateTemp("", "turtles-image-*.json")
	if err != nil {
		return "", err
	}
	tmp.Close()
	return tmp.Name(), image.Write(tmp.Name(), m)
}

func imageListCmd() *cobra.Command {
	return imageCommand("list",
		"List the pinned images in the images directory",
		`list shows the pinned images of the images directory, most recently used
first: size, last use and whether a VM uses one now.`,
		cobra.NoArgs,
		func(cmd *cobra.Command, args []string, s Settings, log *slog.Logger) error {
			c, err := newImageCache(s, log, nil, nil)
			if err != nil {
				return err
			}
			entries, err := c.List()
			if err != nil {
				return err
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "IMAGE\tSIZE\tLAST USED\tIN USE")
			var total int64
			for _, e := range entries {
				use := ""
				if e.InUse {
					use = "yes"
				}
				total += e.Size
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", e.ID, humanize.IBytes(uint64(e.Size)), e.LastUsed.Local().Format(time.DateTime), use)
			}
			w.Flush()
			fmt.Fprintf(cmd.ErrOrStderr(), "%d images, %s in %s\n", len(entries), humanize.IBytes(uint64(total)), s.ImagesDir)
			return nil
		})
}

func imagePruneCmd() *cobra.Command {
	var keep string
	cmd := imageCommand("prune --keep 50GiB",
		"Remove the least recently used images beyond a size budget",
		`prune removes pinned images from the images directory, least recently used
first, until the rest fit in --keep. An image a running VM uses is never
removed, nor a file that another manifest names.`,
		cobra.NoArgs,
		func(cmd *cobra.Command, args []string, s Settings, log *slog.Logger) error {
			budget, err := humanize.ParseBytes(keep)
			if err != nil || keep == "" {
				return fmt.Errorf("--keep %q: want a size such as 50GiB or 500MB", keep)
			}
			c, err := newImageCache(s, log, nil, nil)
			if err != nil {
				return err
			}
			res, err := c.Prune(int64(budget))
			if err != nil {
				return err
			}
			for _, id := range res.Removed {
				fmt.Fprintf(cmd.OutOrStdout(), "removed %s\n", id)
			}
			for _, id := range res.Busy {
				fmt.Fprintf(cmd.OutOrStdout(), "kept %s: a VM uses it\n", id)
			}
			// The saved VM states of the images gone go with them.
			if warm := s.warmStates(); warm != "" {
				states, err := vm.PruneStates(warm, func(file string) bool {
					if sha, ok := strings.CutPrefix(file, "sha256:"); ok {
						return c.HasFile(sha)
					}
					return vm.HaveFile(file)
				})
				if err != nil {
					return err
				}
				for _, name := range states {
					fmt.Fprintf(cmd.OutOrStdout(), "removed saved VM state %s\n", name)
				}
				res.Freed += c.PruneStateFiles()
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "freed %s; %s kept\n", humanize.IBytes(uint64(res.Freed)), humanize.IBytes(uint64(res.Kept)))
			return nil
		})
	cmd.Flags().StringVar(&keep, "keep", "", "size budget, such as 50GiB")
	return cmd
}

func imageServeCmd() *cobra.Command {
	var listen string
	cmd := imageCommand("serve --listen :8080",
		"Serve the images directory to peers, read-only",
		`serve offers the complete files of the images directory to peers at
/images/FILE (GET and HEAD, with Range and ETag; partial downloads are never
served) and Prometheus metrics at /metrics. Bots find peers with
--image-peers NAME, a DNS name that resolves to every peer: on Kubernetes,
a headless service in front of this command, run beside each bot on the
shared images directory.`,
		cobra.NoArgs,
		func(cmd *cobra.Command, args []string, s Settings, log *slog.Logger) error {
			reg := prometheus.NewRegistry()
			c, err := newImageCache(s, log, reg, nil)
			if err != nil {
				return err
			}
			return serveImages(cmd.Context(), listen, s, c, reg, log)
		})
	cmd.Flags().StringVar(&listen, "listen", ":8080", "address to serve on")
	addHTTPFlags(cmd.Flags(), "http-read-timeout", "http-idle-timeout")
	return cmd
}

// serveImages runs the image server until a signal.
func serveImages(ctx context.Context, listen string, s Settings, c *cache.Cache, reg *prometheus.Registry, log *slog.Logger) error {
	mux := http.NewServeMux()
	mux.Handle("/images/", http.StripPrefix("/images", c.Handler()))
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	srv := newHTTPServer(mux, s)
	srv.Addr = listen
	sctx, _, stop := signals()
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	log.Info("serving images", "listen", listen, "dir", c.Dir())
	select {
	case err := <-errc:
		return err
	case <-sctx.Done():
	case <-done(ctx):
	}
	shut, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return srv.Shutdown(shut)
}

func done(ctx context.Context) <-chan struct{} {
	if ctx == nil {
		return nil
	}
	return ctx.Done()
}

// progressBar draws downloads on a terminal; elsewhere it draws nothing
// (the structured log says what happened).
type progressBar struct {
	w       io.Writer
	on      bool
	began   time.Time
	file    string
	drawn   bool
	lastLen int
}

func newProgressBar(w io.Writer) *progressBar {
	f, ok := w.(*os.File)
	on := false
	if ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			on = os.Getenv("TERM") != "dumb"
		}
	}
	return &progressBar{w: w, on: on}
}

func (b *progressBar) update(p cache.Progress) {
	if !b.on {
		return
	}
	if p.File != b.file {
		if b.drawn {
			fmt.Fprintln(b.w)
		}
		b.file, b.began = p.File, time.Now()
	}
	b.drawn = true
	fmt.Fprint(b.w, "\r"+progressLine(p, time.Since(b.began)))
}

func (b *progressBar) done() {
	if b.drawn {
		fmt.Fprintln(b.w)
	}
}

// progressLine is "NAME [=====>    ] 312 MiB / 1.0 GiB  95 MiB/s  ETA 8s".
func progressLine(p cache.Progress, elapsed time.Duration) string {
	name := p.File
	if len(name) > 28 {
		name = name[:12] + "…" + name[len(name)-15:]
	}
	rate := 0.0
	if s := elapsed.Seconds(); s > 0 {
		rate = float64(p.Done) / s
	}
	const width = 20
	bar := strings.Repeat(" ", width)
	eta := ""
	size := "?"
	if p.Total > 0 {
		n := int(int64(width) * min(p.Done, p.Total) / p.Total)
		bar = strings.Repeat("=", n) + strings.Repeat(" ", width-n)
		size = humanize.IBytes(uint64(p.Total))
		if rate > 0 {
			eta = "  ETA " + time.Duration(float64(p.Total-p.Done)/rate*float64(time.Second)).Round(time.Second).String()
		}
	}
	return fmt.Sprintf("%-28s [%s] %s / %s  %s/s%s   ", name, bar, humanize.IBytes(uint64(p.Done)), size, humanize.IBytes(uint64(rate)), eta)
}
