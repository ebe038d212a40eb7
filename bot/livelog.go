package bot

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/turtles-ci/turtles/scrub"
	"github.com/turtles-ci/turtles/store"
	"github.com/turtles-ci/turtles/web/logpage"
)

// maxLogSize bounds a task log; a runaway command must not fill the store.
const maxLogSize = 256 << 20

// chunkEvery is how far behind the stored log may be on stores that get
// numbered chunk objects: at first every chunkEvery, less often as a task
// runs long (see interval).
var chunkEvery = 500 * time.Millisecond

// maxChunk bounds a chunk: a task that prints faster than maxChunk per
// chunkEvery (10 MiB/s), which nobody reads as it scrolls by, is shown
// live at that pace and catches up when it slows down or ends; what no
// chunk holds at the end is uploaded once, in the final log. It is the
// smallest part the store can copy, so that Close composes the final log
// from full chunks rather than uploading them again.
var maxChunk int64 = store.MinPartSize

const logType = "text/plain; charset=utf-8"

// logMode is how an attempt's log reaches the store.
type logMode int

const (
	// inPlace: the store's object is a local file (store.Creator) and the
	// log is written into it, once; readers see it grow.
	inPlace logMode = iota
	// chunked: a local copy, uploaded in chunks while the task runs (the
	// layout of store.ChunkIndex), then stored whole by Close.
	chunked
	// finalOnly: a local copy, stored when the attempt ends.
	finalOnly
)

// FinalLogOnly returns st for a bot that stores each log only when its
// attempt ends, with no live log: the baseline of the log-overhead
// benchmark, and a choice for stores where many small objects cost.
func FinalLogOnly(st store.Store) store.Store { return finalLogOnly{st} }

// finalLogOnly hides st's optional interfaces and tells newLiveLog not to
// stream.
type finalLogOnly struct{ store.Store }

// liveLog is the log of one attempt. Everything written is scrubbed of
// secrets, then goes to the store: into the object itself when the store
// keeps local files, else to a local file that is uploaded in chunks while
// the task runs and stored whole by Close. Writes never wait for uploads.
type liveLog struct {
	st   store.Store
	key  string
	log  *slog.Logger
	mode logMode

	mu        sync.Mutex
	scr       *scrub.Scrubber
	sw        *scrub.Writer // into raw, under mu
	f         *os.File      // read back through this handle, never by name
	size      int64
	truncated bool
	tests     *testTracker

	// Upload state of chunked logs, under flushMu.
	flushMu sync.Mutex
	index   store.ChunkIndex

	stop     chan struct{}
	stopOnce sync.Once
	done     chan struct{}
}

func newLiveLog(st store.Store, key, path string, log *slog.Logger) (*liveLog, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	l := &liveLog{st: st, key: key, log: log, mode: chunked,
		stop: make(chan struct{}), done: make(chan struct{}), tests: newTestTracker()}
	if fo, ok := st.(finalLogOnly); ok {
		l.st, l.mode = fo.Store, finalOnly
	}
	var err error
	if c, ok := st.(store.Creator); ok {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		l.f, err = c.Create(ctx, key, logType)
		cancel()
		l.mode = inPlace
	} else {
		l.f, err = os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	}
	if err != nil {
		return nil, fmt.Errorf("create log file: %w", err)
	}
	// Until setSecrets, the scrubber passes everything through.
	l.scr = scrub.New(nil)
	l.sw = l.scr.NewWriter(rawWriter{l})
	l.putPage()
	if l.mode == chunked {
		go l.flusher()
	} else {
		close(l.done)
	}
	return l, nil
}

// putPage stores the static log page beside the log, so that a person can
// follow the attempt from the store alone. A failure costs only the page.
func (l *liveLog) putPage() {
	dir := strings.TrimSuffix(l.key, "log")
	if dir == l.key {
		return // not the attempt's "log": no page
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := l.st.Put(ctx, dir+logpage.Name, bytes.NewReader(logpage.HTML), logpage.ContentType); err != nil {
		l.log.Warn("store log page", "key", dir+logpage.Name, "err", err)
	}
}

// Write implements io.Writer; it is safe for concurrent use.
func (l *liveLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, err := l.sw.Write(p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// rawWriter takes the scrubbed stream, with liveLog.mu held.
type rawWriter struct{ l *liveLog }

func (r rawWriter) Write(p []byte) (int, error) {
	l := r.l
	n := len(p)
	if l.truncated {
		return n, nil
	}
	if l.size+int64(len(p)) > maxLogSize {
		p = append(p[:maxLogSize-l.size:maxLogSize-l.size], fmt.Sprintf("\nturtles: log truncated at %d MiB\n", maxLogSize>>20)...)
		l.truncated = true
	}
	if _, err := l.f.Write(p); err != nil {
		return 0, err
	}
	l.tests.Write(p)
	l.size += int64(len(p))
	return n, nil
}

func (l *liveLog) flusher() {
	defer close(l.done)
	timer := time.NewTimer(chunkEvery)
	defer timer.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-timer.C:
		}
		l.flush()
		timer.Reset(l.interval())
	}
}

// interval stretches the chunk interval of long tasks: every chunkEvery
// for the first 5 minutes (600 chunks), twice that up to an hour, four
// times that after, so that a six-hour task makes about 13,000 chunks.
func (l *liveLog) interval() time.Duration {
	l.flushMu.Lock()
	n := len(l.index.Offsets)
	l.flushMu.Unlock()
	switch {
	case n > 4000:
		return 4 * chunkEvery
	case n > 600:
		return 2 * chunkEvery
	}
	return chunkEvery
}

// stopFlusher stops the periodic chunks and waits for one under way.
func (l *liveLog) stopFlusher() {
	l.stopOnce.Do(func() { close(l.stop) })
	<-l.done
}

// written is the size of the log so far.
func (l *liveLog) written() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.size
}

// flush uploads what is new as the next chunk. Failures are logged and
// left for Close to mend: it stores the whole log.
func (l *liveLog) flush() {
	if l.mode != chunked {
		return
	}
	l.flushMu.Lock()
	defer l.flushMu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := l.putChunk(ctx, l.written()); err != nil {
		l.log.Warn("upload live log chunk", "key", l.key, "err", err)
	}
}

// flushEnd is flush for when the command has ended: its last lines go out
// now, not after the result and the whole log are stored. A tail bigger
// than a chunk is left to Close, which stores the whole log a moment
// later: uploaded once, rather than as a chunk first.
func (l *liveLog) flushEnd() {
	if l.mode != chunked {
		return
	}
	l.stopFlusher() // no chunk of turtles' last lines: Close follows
	l.flushMu.Lock()
	pending := l.written() - l.index.Size
	l.flushMu.Unlock()
	if pending > maxChunk {
		return
	}
	l.flush()
}

// putChunk uploads the log from the end of the last chunk to size as the
// next chunk, then the index that names it.
func (l *liveLog) putChunk(ctx context.Context, size int64) error {
	from := l.index.Size
	if size <= from {
		return nil
	}
	size = min(size, from+maxChunk)
	n := len(l.index.Offsets) + 1
	if err := l.st.Put(ctx, store.ChunkKey(l.key, n), io.NewSectionReader(l.f, from, size-from), logType); err != nil {
		return err
	}
	next := store.ChunkIndex{Offsets: append(l.index.Offsets, from), Size: size}
	if err := store.PutChunkIndex(ctx, l.st, l.key, next); err != nil {
		// The chunk is there but unnamed; the next index names it or the
		// next chunk replaces it.
		l.index.Offsets = l.index.Offsets[:n-1]
		return err
	}
	l.index = next
	return nil
}

// Close stops live updates and stores the complete log.
func (l *liveLog) Close(ctx context.Context) error {
	l.mu.Lock()
	err := l.sw.Flush()
	l.mu.Unlock()
	if err != nil {
		return fmt.Errorf("write log: %w", err)
	}
	l.stopFlusher()
	if l.mode == inPlace {
		if err := l.f.Close(); err != nil {
			return fmt.Errorf("store log: %w", err)
		}
		return nil
	}
	defer l.f.Close()
	size := l.written()
	l.flushMu.Lock()
	defer l.flushMu.Unlock()
	if err := l.storeWhole(ctx, size); err != nil {
		return fmt.Errorf("store log: %w", err)
	}
	if len(l.index.Offsets) > 0 {
		if err := store.DeleteChunks(ctx, l.st, l.key, l.index); err != nil {
			l.log.Warn("delete live log chunks", "key", l.key, "err", err)
		}
	}
	return nil
}

// storeWhole stores the first size bytes of the log as one object: from
// the chunks already uploaded, where the store composes, else from the
// local copy.
func (l *liveLog) storeWhole(ctx context.Context, size int64) error {
	if c, ok := l.st.(store.Composer); ok {
		parts := composeParts(l.key, l.index, size, l.f)
		copied := false
		for _, p := range parts {
			copied = copied || p.Key != ""
		}
		if copied {
			err := c.Compose(ctx, l.key, parts, logType)
			if err == nil {
				return nil
			}
			l.log.Warn("compose log from its chunks; uploading it whole", "key", l.key, "err", err)
		}
	}
	return l.st.Put(ctx, l.key, io.NewSectionReader(l.f, 0, size), logType)
}

// composeParts plans the final log from its chunks: every stretch of at
// least store.MinPartSize inside one chunk (or ending the log) is copied
// by the store; the bytes between, and the tail no chunk holds, are
// uploaded from the local copy in parts of at least store.MinPartSize.
// A task that prints fast makes big chunks, so almost nothing is uploaded
// twice; one that prints slowly makes small ones, re-uploaded, but then
// the log is small for the time the task takes.
func composeParts(key string, idx store.ChunkIndex, size int64, local io.ReaderAt) []store.Part {
	// chunkAt finds the chunk holding byte pos: its number (0: none), start
	// and end.
	chunkAt := func(pos int64) (int, int64, int64) {
		if pos >= idx.Size {
			return 0, 0, 0
		}
		n := sort.Search(len(idx.Offsets), func(i int) bool { return idx.Offsets[i] > pos })
		end := idx.Size
		if n < len(idx.Offsets) {
			end = idx.Offsets[n]
		}
		return n, idx.Offsets[n-1], end
	}
	var parts []store.Part
	for pos := int64(0); pos < size; {
		n, start, end := chunkAt(pos)
		if n > 0 && (end-pos >= store.MinPartSize || end == size) {
			parts = append(parts, store.Part{Key: store.ChunkKey(key, n), Offset: pos - start, Size: end - pos})
			pos = end
			continue
		}
		stop := min(size, pos+store.MinPartSize)
		if n2, _, end2 := chunkAt(stop); n2 == 0 {
			stop = size // the rest is only here: one last part
		} else if end2-stop < store.MinPartSize && end2 != size {
			stop = end2 // the rest of that chunk is too small to copy
			if stop == idx.Size {
				stop = size // and no chunk holds what follows
			}
		}
		// Big stretches go in several parts, uploaded side by side.
		for stop-pos > uploadPartSize+store.MinPartSize {
			parts = append(parts, store.Part{Data: io.NewSectionReader(local, pos, uploadPartSize), Size: uploadPartSize})
			pos += uploadPartSize
		}
		parts = append(parts, store.Part{Data: io.NewSectionReader(local, pos, stop-pos), Size: stop - pos})
		pos = stop
	}
	return parts
}

// uploadPartSize is the size of the parts composeParts uploads from a long
// stretch of the local copy.
const uploadPartSize = 16 << 20

// Scrubber is the attempt's scrubber, for artifact names and results.
func (l *liveLog) Scrubber() *scrub.Scrubber {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.scr
}

// setSecrets makes the log mask values from now on. Call it before the
// values can appear: once the command that knows them is about to run.
func (l *liveLog) setSecrets(values []string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.sw.Flush(); err != nil {
		return err
	}
	l.scr = scrub.New(values)
	l.sw = l.scr.NewWriter(rawWriter{l})
	return nil
}

// contents reads the log written so far: what triage searches. A log
// written in place in the store (write-only there) is read from the
// store; a local one through the handle (ReadAt, so that writes and the
// flusher are not disturbed).
func (l *liveLog) contents(ctx context.Context) (io.ReadCloser, error) {
	l.mu.Lock()
	size := l.size
	l.mu.Unlock()
	if l.mode == inPlace {
		rc, _, err := l.st.Get(ctx, l.key)
		if err != nil {
			return nil, err
		}
		return struct {
			io.Reader
			io.Closer
		}{io.LimitReader(rc, size), rc}, nil
	}
	return io.NopCloser(io.NewSectionReader(l.f, 0, size)), nil
}
