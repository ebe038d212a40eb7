package bot

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/turtles-ci/turtles/scrub"
	"github.com/turtles-ci/turtles/store"
	"github.com/turtles-ci/turtles/web/logpage"
)

// maxLogSize bounds a task log; a runaway command must not fill the store.
const maxLogSize = 256 << 20

// Flush intervals: how far behind the stored log may be. Stores that
// cannot append get numbered chunk objects, at first every chunkEvery and
// less often as a task runs long (see interval).
var (
	appendEvery = 500 * time.Millisecond
	chunkEvery  = 500 * time.Millisecond
)

const logType = "text/plain; charset=utf-8"

// The chunk scheme, for stores that cannot append (S3). While the task
// runs, KEY.chunks/NNNNNN holds the bytes from Offsets[N-1] on, and
// KEY.chunks/index.json (a ChunkIndex) is rewritten after each chunk.
// At the end, KEY is put whole, then the chunks and the index are
// deleted. A reader polls the index; when it is gone, KEY is complete.
// The static log page (web/logpage) follows a live log this way.
const (
	ChunkDir   = ".chunks/"
	ChunkIndex = "index.json"
)

// ChunkIndexData is the content of the chunk index.
type ChunkIndexData struct {
	// Offsets[i] is where chunk i+1 starts in the log.
	Offsets []int64 `json:"offsets"`
	// Size is the log size the chunks add up to.
	Size int64 `json:"size"`
}

// ChunkName is the key of chunk n (from 1) of the log at key.
func ChunkName(key string, n int) string { return fmt.Sprintf("%s%s%06d", key, ChunkDir, n) }

// liveLog is the log of one attempt. Everything written is scrubbed of
// secrets, then goes to a local file and, while the task runs, to the
// store: appended in place when the store is an Appender, otherwise as
// chunk objects. Close puts the complete log.
type liveLog struct {
	st  store.Store
	app store.Appender // nil: chunks
	key string
	log *slog.Logger
	scr *scrub.Scrubber

	mu        sync.Mutex
	sw        *scrub.Writer // into raw, under mu
	f         *os.File      // read back through this handle, never by name
	size      int64
	dirty     bool // written since the last flush
	truncated bool
	appendErr bool // an Append failed: Close must Put the whole log
	tests     *testTracker

	// Upload state, under flushMu.
	flushMu  sync.Mutex
	index    ChunkIndexData // chunks
	appended int64          // bytes appended
	buf      []byte
	started  time.Time

	stop chan struct{}
	done chan struct{}
}

func newLiveLog(st store.Store, key, path string, log *slog.Logger) (*liveLog, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create log file: %w", err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	l := &liveLog{st: st, key: key, log: log, f: f, started: time.Now(),
		stop: make(chan struct{}), done: make(chan struct{}), tests: newTestTracker()}
	// Secrets by name come with the secrets issue; until then the list is
	// empty and the scrubber passes everything through.
	l.scr = scrub.New(nil)
	l.sw = l.scr.NewWriter(rawWriter{l})
	l.app, _ = st.(store.Appender)
	l.putPage()
	go l.flusher()
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
	l.dirty = true
	return n, nil
}

func (l *liveLog) flusher() {
	defer close(l.done)
	every := appendEvery
	if l.app == nil {
		every = chunkEvery
	}
	timer := time.NewTimer(every)
	defer timer.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-timer.C:
		}
		l.flush()
		timer.Reset(l.interval(every))
	}
}

// interval stretches the chunk interval of long tasks: every chunkEvery
// for the first 5 minutes (600 chunks), twice that up to an hour, four
// times that after, so that a six-hour task makes about 13,000 chunks.
func (l *liveLog) interval(every time.Duration) time.Duration {
	if l.app != nil {
		return every
	}
	l.flushMu.Lock()
	n := len(l.index.Offsets)
	l.flushMu.Unlock()
	switch {
	case n > 4000:
		return 4 * every
	case n > 600:
		return 2 * every
	}
	return every
}

// flush sends what is new to the store. Failures are logged and left for
// the final Put to mend.
func (l *liveLog) flush() {
	l.flushMu.Lock()
	defer l.flushMu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	l.mu.Lock()
	if !l.dirty {
		l.mu.Unlock()
		return
	}
	l.dirty = false
	if l.app != nil {
		size, failed := l.size, l.appendErr
		l.mu.Unlock()
		if !failed {
			l.appendTo(ctx, size)
		}
		return
	}
	size := l.size
	l.mu.Unlock()
	if err := l.putChunk(ctx, size); err != nil {
		l.log.Warn("upload live log chunk", "key", l.key, "err", err)
	}
}

// appendTo appends the log from what was appended to size, read back from
// the local file in pieces: no copy of the log is kept in memory. After a
// failure it stops, and Close puts the whole log.
func (l *liveLog) appendTo(ctx context.Context, size int64) {
	const piece = 4 << 20
	for l.appended < size {
		n := min(size-l.appended, piece)
		if int64(cap(l.buf)) < n {
			l.buf = make([]byte, n)
		}
		b := l.buf[:n]
		if _, err := l.f.ReadAt(b, l.appended); err != nil {
			l.log.Warn("read back log", "err", err)
			return
		}
		if err := l.app.Append(ctx, l.key, b); err != nil {
			l.log.Warn("append to live log", "key", l.key, "err", err)
			l.mu.Lock()
			l.appendErr = true
			l.mu.Unlock()
			return
		}
		l.appended += n
	}
}

// putChunk uploads the log from the end of the last chunk to size as the
// next chunk, then the index that names it.
func (l *liveLog) putChunk(ctx context.Context, size int64) error {
	from := l.index.Size
	if size <= from {
		return nil
	}
	n := len(l.index.Offsets) + 1
	if err := l.st.Put(ctx, ChunkName(l.key, n), io.NewSectionReader(l.f, from, size-from), logType); err != nil {
		return err
	}
	next := ChunkIndexData{Offsets: append(l.index.Offsets, from), Size: size}
	data, _ := json.Marshal(next)
	if err := l.st.Put(ctx, l.key+ChunkDir+ChunkIndex, bytes.NewReader(data), "application/json"); err != nil {
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
	close(l.stop)
	<-l.done
	defer l.f.Close()
	if l.app != nil {
		// Appended all along: only the rest is missing, unless an append
		// failed and left a hole.
		l.flush()
		l.mu.Lock()
		size, failed := l.size, l.appendErr
		l.mu.Unlock()
		l.flushMu.Lock()
		done := l.appended == size
		l.flushMu.Unlock()
		if !failed && done {
			return nil
		}
	}
	l.mu.Lock()
	size := l.size
	l.mu.Unlock()
	if err := l.st.Put(ctx, l.key, io.NewSectionReader(l.f, 0, size), logType); err != nil {
		return fmt.Errorf("store log: %w", err)
	}
	l.flushMu.Lock()
	defer l.flushMu.Unlock()
	if l.app == nil && len(l.index.Offsets) > 0 {
		// The index first: a reader that finds it gone reads the log.
		var errs []error
		errs = append(errs, l.st.Delete(ctx, l.key+ChunkDir+ChunkIndex))
		for i := range l.index.Offsets {
			errs = append(errs, l.st.Delete(ctx, ChunkName(l.key, i+1)))
		}
		if err := errors.Join(errs...); err != nil {
			l.log.Warn("delete live log chunks", "key", l.key, "err", err)
		}
	}
	return nil
}

// Scrubber is the attempt's scrubber, for artifact names and results.
func (l *liveLog) Scrubber() *scrub.Scrubber { return l.scr }

// setSecrets replaces the scrubber; it must be called before the first
// Write.
func (l *liveLog) setSecrets(values []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.scr = scrub.New(values)
	l.sw = l.scr.NewWriter(rawWriter{l})
}
