package cache

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// bufSize is the size of reads and writes while fetching: large enough
// that system calls and hashing run at disk speed.
const bufSize = 1 << 20

// pull is one fetch of an image: its sources in probe order and the ones
// that sent bad bytes.
type pull struct {
	c       *Cache
	id      ID
	sources []Source
	bad     map[Source]bool
}

// fetch downloads what the cache lacks of id, then its manifest.
func (c *Cache) fetch(ctx context.Context, id ID) error {
	began := time.Now()
	sources, err := c.probe(ctx, id)
	if err != nil {
		return err
	}
	p := &pull{c: c, id: id, sources: sources, bad: map[Source]bool{}}
	manifest, files, err := p.manifest(ctx)
	if err != nil {
		return err
	}
	// The manifest is the pin's, not the source's: no source is blamed.
	if err := checkSizes(id, files, c.cfg.MaxImageSize); err != nil {
		return err
	}
	for _, f := range files {
		if err := p.file(ctx, f); err != nil {
			return err
		}
	}
	if err := writeAtomic(c.path(id.ManifestFile()), manifest, c.tmpDir()); err != nil {
		return err
	}
	c.m.duration.Observe(time.Since(began).Seconds())
	c.log.Info("pulled image", "image", id, "took", time.Since(began).Round(time.Millisecond))
	return nil
}

// probe asks every source for the manifest at once and returns those that
// have it, fastest first.
func (c *Cache) probe(ctx context.Context, id ID) ([]Source, error) {
	all := c.sources(ctx)
	if len(all) == 0 {
		return nil, errNoSources
	}
	type result struct {
		s   Source
		rtt time.Duration
		err error
	}
	results := make([]result, len(all))
	var wg sync.WaitGroup
	for i, s := range all {
		wg.Go(func() {
			pctx, cancel := context.WithTimeout(ctx, c.cfg.ProbeTimeout)
			defer cancel()
			t := time.Now()
			err := s.Stat(pctx, id.ManifestFile())
			results[i] = result{s, time.Since(t), err}
		})
	}
	wg.Wait()
	sort.SliceStable(results, func(i, j int) bool { return results[i].rtt < results[j].rtt })
	var ok []Source
	var why []string
	for _, r := range results {
		switch {
		case r.err == nil:
			ok = append(ok, r.s)
			c.log.Debug("image source", "image", id, "source", r.s.String(), "rtt", r.rtt)
		case errors.Is(r.err, fs.ErrNotExist):
			why = append(why, r.s.String()+": does not have it")
		default:
			c.log.Info("image source is down", "image", id, "source", r.s.String(), "err", r.err)
			why = append(why, fmt.Sprintf("%s: %v", r.s, r.err))
		}
	}
	if len(ok) == 0 {
		return nil, fmt.Errorf("%w (%s)", errNowhere, strings.Join(why, "; "))
	}
	return ok, nil
}

// manifest fetches and checks the manifest from the first source that
// gives the right bytes.
func (p *pull) manifest(ctx context.Context) ([]byte, []File, error) {
	var errs []error
	for _, s := range p.sources {
		b, err := p.readManifest(ctx, s)
		if err == nil {
			var files []File
			if _, files, err = parseManifest(p.id, b); err == nil {
				return b, files, nil
			}
		}
		if isMismatch(err) {
			p.blame(s, p.id.ManifestFile(), err)
		} else {
			p.c.log.Info("image source failed", "image", p.id, "source", s.String(), "err", err)
		}
		errs = append(errs, fmt.Errorf("%s: %w", s, err))
	}
	return nil, nil, errors.Join(errs...)
}

func (p *pull) readManifest(ctx context.Context, s Source) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, p.c.cfg.StallTimeout)
	defer cancel()
	r, _, _, err := s.Open(ctx, p.id.ManifestFile(), 0)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	b, err := io.ReadAll(io.LimitReader(r, maxManifest+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxManifest {
		return nil, fmt.Errorf("manifest larger than %d bytes", maxManifest)
	}
	return b, nil
}

// blame logs that s sent bytes that do not match and skips it for the rest
// of this pull.
func (p *pull) blame(s Source, file string, err error) {
	p.bad[s] = true
	p.c.m.corrupt.WithLabelValues(s.String()).Inc()
	p.c.log.Warn("image source sent corrupted data; not using it for this image", "image", p.id, "file", file, "source", s.String(), "err", err)
}

// file downloads f unless the cache has it. One process downloads a file
// at a time; the others wait and find it there.
func (p *pull) file(ctx context.Context, f File) error {
	c := p.c
	final := c.path(f.Name)
	if _, err := os.Stat(final); err == nil {
		return nil
	}
	unlock, err := c.flock(ctx, f.Name+".lock", syscall.LOCK_EX)
	if err != nil {
		return err
	}
	defer unlock()
	if _, err := os.Stat(final); err == nil {
		c.log.Debug("image file fetched meanwhile by another puller", "file", f.Name)
		return nil
	}
	d, err := p.openPart(f)
	if err != nil {
		return err
	}
	defer d.close()

	if d.off == f.Size {
		// A part complete but not renamed (a crash at the end): no source
		// needed unless its hash is wrong.
		err := d.finish(f)
		if err == nil {
			return nil
		}
		var le *localError
		if errors.As(err, &le) {
			return err
		}
		if rerr := d.reset(); rerr != nil {
			return &localError{rerr}
		}
	}

	var errs []error
	for i := 0; i < len(p.sources); i++ {
		s := p.sources[i]
		if p.bad[s] {
			continue
		}
		err := p.copyFrom(ctx, s, f, d)
		if err == nil {
			err = d.finish(f)
		}
		var le *localError
		var se *sizeError
		switch {
		case err == nil:
			return nil
		case errors.As(err, &le), ctx.Err() != nil:
			return err
		case errors.As(err, &se):
			// Bytes past the size were never written; those before came
			// from the same liar, so they go too.
			p.blame(s, f.Name, err)
			if rerr := d.reset(); rerr != nil {
				return &localError{rerr}
			}
		case isMismatch(err):
			mixed := len(d.from) > 1
			if !mixed {
				p.blame(s, f.Name, err)
			} else {
				p.c.log.Warn("image file does not match; one of these sources sent corrupted data", "image", p.id, "file", f.Name, "sources", d.sources(), "err", err)
			}
			if rerr := d.reset(); rerr != nil {
				return &localError{rerr}
			}
			if mixed {
				// Again from this source alone, so that a second
				// mismatch has one culprit.
				i--
				continue
			}
		default:
			c.log.Info("image source failed; trying the next", "image", p.id, "file", f.Name, "source", s.String(), "at", d.off, "err", err)
		}
		errs = append(errs, fmt.Errorf("%s: %w", s, err))
	}
	return fmt.Errorf("%s: every source failed (%d of %d bytes kept for a resume): %w", f.Name, d.off, d.total, errors.Join(errs...))
}

// part is a download in progress: .tmp/FILE.part and the hash of what it
// holds so far.
type part struct {
	path  string
	f     *os.File
	w     io.Writer
	h     hash.Hash
	off   int64
	total int64
	from  map[string]bool
}

// openPart opens the partial file of f, hashing what an earlier run left
// in it (the only second read of any byte, and only after a crash).
func (p *pull) openPart(f File) (*part, error) {
	path := filepath.Join(p.c.tmpDir(), f.Name+".part")
	fh, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, diskError(path, err)
	}
	d := &part{path: path, f: fh, w: fh, h: sha256.New(), total: f.Size, from: map[string]bool{}}
	if p.c.cfg.wrap != nil {
		d.w = p.c.cfg.wrap(fh)
	}
	// Only up to the recorded size: a longer part (left by a version that
	// read to the source's end) starts afresh.
	n, err := io.CopyBuffer(d.h, io.LimitReader(fh, f.Size+1), make([]byte, bufSize))
	if err != nil {
		fh.Close()
		return nil, err
	}
	if n > f.Size {
		if err := d.reset(); err != nil {
			fh.Close()
			return nil, err
		}
		n = 0
	}
	d.off = n
	if n > 0 {
		d.from["earlier run"] = true
		p.c.log.Info("resuming image download", "image", p.id, "file", f.Name, "at", n)
	}
	return d, nil
}

func (d *part) sources() []string {
	var out []string
	for s := range d.from {
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}

func (d *part) reset() error {
	if err := d.f.Truncate(0); err != nil {
		return err
	}
	if _, err := d.f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	d.h.Reset()
	d.off = 0
	clear(d.from)
	return nil
}

// close closes the file; the part stays for a resume unless removed.
func (d *part) close() {
	if d.f != nil {
		d.f.Close()
	}
}

// discard removes the part: a full disk leaves no partial file behind.
func (d *part) discard() {
	d.close()
	d.f = nil
	os.Remove(d.path)
}

// copyFrom appends what s has of f beyond d.off, hashing as it writes:
// the hash runs on another core, a few buffers behind the writes, and the
// kernel is asked to start writing back every writeback bytes, so that
// the final fsync is short.
func (p *pull) copyFrom(ctx context.Context, s Source, f File, d *part) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	r, start, total, err := s.Open(ctx, f.Name, d.off)
	if err != nil {
		return err
	}
	defer r.Close()
	if total >= 0 && total != f.Size {
		return &sizeError{source: s.String(), file: f.Name, size: f.Size, says: total}
	}
	if start != d.off {
		if err := d.reset(); err != nil {
			return &localError{err}
		}
	}
	d.from[s.String()] = true
	// Never a byte past the recorded size, whatever the source sends.
	lr := &io.LimitedReader{R: r, N: f.Size - d.off}
	// A source that stops sending without closing is given up on.
	stall := time.AfterFunc(p.c.cfg.StallTimeout, func() { cancel(errors.New("source stalled")) })
	defer stall.Stop()
	bytes := p.c.m.bytes.WithLabelValues(s.String())
	hp := newHashPipe(d.h, 4)
	defer hp.wait() // d.h covers every byte written when copyFrom returns
	flushed := d.off
	lastReport := time.Time{}
	for {
		buf := hp.buf()
		n, rerr := fill(lr, buf)
		if n > 0 {
			stall.Reset(p.c.cfg.StallTimeout)
			if _, err := d.w.Write(buf[:n]); err != nil {
				hp.give(buf[:0])
				hp.wait()
				d.discard()
				return &localError{diskError(d.path, err)}
			}
			hp.give(buf[:n])
			d.off += int64(n)
			bytes.Add(float64(n))
			if d.off-flushed >= writeback {
				startWriteback(d.f, flushed, d.off-flushed)
				flushed = d.off
			}
			if p.c.cfg.Progress != nil && (time.Since(lastReport) > 100*time.Millisecond || rerr != nil) {
				lastReport = time.Now()
				p.c.cfg.Progress(Progress{ID: p.id, File: f.Name, Source: s.String(), Done: d.off, Total: d.total})
			}
		} else {
			hp.give(buf[:0])
		}
		switch {
		case rerr == io.EOF && lr.N == 0:
			// At the size: one more byte means the source sends another
			// file, or without end. A source that neither sends nor ends
			// is not waited for long; what it sent is all there is.
			stall.Reset(min(p.c.cfg.StallTimeout, extraByteWait))
			var one [1]byte
			if _, err := io.ReadFull(r, one[:]); err == nil {
				return &sizeError{source: s.String(), file: f.Name, size: f.Size, says: -1}
			}
			return nil
		case rerr == io.EOF:
			return fmt.Errorf("%s ended at %d of %d bytes: %w", f.Name, d.off, d.total, io.ErrUnexpectedEOF)
		case rerr != nil:
			if cause := context.Cause(ctx); cause != nil && ctx.Err() != nil {
				return fmt.Errorf("%s at %d bytes: %w", f.Name, d.off, cause)
			}
			return fmt.Errorf("%s at %d bytes: %w", f.Name, d.off, rerr)
		}
	}
}

// writeback is how many bytes are written before the kernel is asked to
// start writing them to disk.
const writeback = 32 << 20

// startWriteback starts writing a range of f to disk without waiting
// (sync_file_range(2) SYNC_FILE_RANGE_WRITE); errors show at fsync.
func startWriteback(f *os.File, off, n int64) {
	if f != nil {
		unix.SyncFileRange(int(f.Fd()), off, n, unix.SYNC_FILE_RANGE_WRITE)
	}
}

// pipeBufSize is the size of the download's buffers: large enough for
// few system calls, small enough that a buffer is still in the CPU's cache
// when it is written and hashed (bench image-pull: 1 MiB buffers cost
// about 1.6 times the CPU per GiB of 512 KiB ones).
const pipeBufSize = 512 << 10

// hashPipe feeds buffers to a hash on its own goroutine, so that hashing
// overlaps reading and writing.
type hashPipe struct {
	in   chan []byte
	free chan []byte
	done chan struct{}
	once sync.Once
}

func newHashPipe(h hash.Hash, n int) *hashPipe {
	p := &hashPipe{in: make(chan []byte, n), free: make(chan []byte, n), done: make(chan struct{})}
	for range n {
		p.free <- make([]byte, pipeBufSize)
	}
	go func() {
		defer close(p.done)
		for b := range p.in {
			h.Write(b)
			p.free <- b[:cap(b)]
		}
	}()
	return p
}

// buf returns a free buffer.
func (p *hashPipe) buf() []byte { return <-p.free }

// give hashes b (possibly empty) and then frees it.
func (p *hashPipe) give(b []byte) { p.in <- b }

// wait returns once every buffer given is hashed.
func (p *hashPipe) wait() {
	p.once.Do(func() { close(p.in) })
	<-p.done
}

// finish checks the hash and renames the part into place.
func (d *part) finish(f File) error {
	if got := hex.EncodeToString(d.h.Sum(nil)); got != f.SHA256 {
		return &mismatchError{file: f.Name, got: got}
	}
	if err := d.f.Sync(); err != nil {
		d.discard()
		return &localError{diskError(d.path, err)}
	}
	if err := d.f.Chmod(0o444); err != nil {
		return &localError{err}
	}
	if err := os.Rename(d.path, filepath.Join(filepath.Dir(filepath.Dir(d.path)), f.Name)); err != nil {
		return &localError{err}
	}
	d.close()
	d.f = nil
	return nil
}

// fill reads into buf until it is full or r fails; unlike io.ReadFull it
// passes r's error on as it is, so that a clean end (io.EOF) and a cut
// connection (io.ErrUnexpectedEOF from net/http) differ.
func fill(r io.Reader, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		m, err := r.Read(buf[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// extraByteWait bounds the wait, at a file's recorded size, for a byte
// past it.
const extraByteWait = time.Second

// sizeError is a source that sent, or says it has, another size than the
// manifest records: it is blamed like one that sent corrupted data.
type sizeError struct {
	source, file string
	size         int64
	says         int64 // the size the source announced; -1: it sent more
}

func (e *sizeError) Error() string {
	if e.says < 0 {
		return fmt.Sprintf("image source %s sent more than the %d bytes its manifest records for %s", e.source, e.size, e.file)
	}
	return fmt.Sprintf("image source %s says %s has %d bytes; its manifest records %d", e.source, e.file, e.says, e.size)
}

// localError is a failure of this host (disk, file system), not of a
// source: trying another source would not help.
type localError struct{ err error }

func (e *localError) Error() string { return e.err.Error() }
func (e *localError) Unwrap() error { return e.err }
