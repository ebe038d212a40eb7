package bot

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/turtles-ci/turtles/store"
)

// maxLogSize bounds a task log; a runaway command must not fill the store.
const maxLogSize = 256 << 20

// Flush intervals: how far behind the stored log may be.
var (
	appendEvery = 500 * time.Millisecond
	putEvery    = 2 * time.Second
)

const logType = "text/plain; charset=utf-8"

// liveLog is the log of one attempt. Everything written goes to a local
// file and, while the task runs, to the store: appended in place when the
// store is an Appender, otherwise uploaded whole every putEvery. Close puts
// the complete log.
type liveLog struct {
	st  store.Store
	app store.Appender // nil: upload whole
	key string
	log *slog.Logger

	mu        sync.Mutex
	f         *os.File // read back through this handle, never by name
	size      int64
	pending   []byte // not yet appended
	dirty     bool   // written since the last upload
	truncated bool

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
	l := &liveLog{st: st, key: key, log: log, f: f, stop: make(chan struct{}), done: make(chan struct{})}
	l.app, _ = st.(store.Appender)
	go l.flusher()
	return l, nil
}

// Write implements io.Writer; it is safe for concurrent use.
func (l *liveLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
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
	l.size += int64(len(p))
	l.dirty = true
	if l.app != nil {
		l.pending = append(l.pending, p...)
	}
	return n, nil
}

func (l *liveLog) flusher() {
	defer close(l.done)
	every := putEvery
	if l.app != nil {
		every = appendEvery
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-tick.C:
		}
		l.flush()
	}
}

// flush sends what is new to the store. Failures are logged and left for
// the final Put to mend.
func (l *liveLog) flush() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	l.mu.Lock()
	if !l.dirty {
		l.mu.Unlock()
		return
	}
	l.dirty = false
	if l.app != nil {
		p := l.pending
		l.pending = nil
		l.mu.Unlock()
		if err := l.app.Append(ctx, l.key, p); err != nil {
			l.log.Warn("append to live log", "key", l.key, "err", err)
		}
		return
	}
	size := l.size
	l.mu.Unlock()
	if err := l.st.Put(ctx, l.key, io.NewSectionReader(l.f, 0, size), logType); err != nil {
		l.log.Warn("upload live log", "key", l.key, "err", err)
	}
}

// Close stops live updates and stores the complete log.
func (l *liveLog) Close(ctx context.Context) error {
	close(l.stop)
	<-l.done
	l.mu.Lock()
	size := l.size
	l.mu.Unlock()
	defer l.f.Close()
	if err := l.st.Put(ctx, l.key, io.NewSectionReader(l.f, 0, size), logType); err != nil {
		return fmt.Errorf("store log: %w", err)
	}
	return nil
}
