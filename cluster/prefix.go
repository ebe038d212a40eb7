package cluster

import (
	"io"
	"sync"
)

// LinePrefix returns a writer that writes to w with prefix at the start
// of every line: the serial consoles of several machines in one log.
func LinePrefix(w io.Writer, prefix string) io.Writer {
	return &linePrefix{w: w, prefix: prefix}
}

type linePrefix struct {
	w      io.Writer
	prefix string
	mu     sync.Mutex
	mid    bool // within a line
	buf    []byte
}

func (l *linePrefix) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf = l.buf[:0]
	for _, c := range p {
		if !l.mid {
			l.buf = append(l.buf, l.prefix...)
			l.mid = true
		}
		l.buf = append(l.buf, c)
		if c == '\n' {
			l.mid = false
		}
	}
	if _, err := l.w.Write(l.buf); err != nil {
		return 0, err
	}
	return len(p), nil
}
