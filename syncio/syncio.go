// Package syncio holds writers that many goroutines may write at once: a
// command's stdout and stderr copiers, slog handlers, a serial console.
// Any package may import it; it imports nothing of turtles.
package syncio

import (
	"bytes"
	"io"
	"sync"
)

// Writer serializes writes to an underlying writer, so that one Write is
// never interleaved with another.
type Writer struct {
	mu sync.Mutex
	w  io.Writer
}

// NewWriter returns a Writer writing to w. Writes that bypass it may
// still interleave with its own.
func NewWriter(w io.Writer) *Writer { return &Writer{w: w} }

func (l *Writer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// Buffer is a bytes.Buffer that some goroutines write while another reads
// it, as a test reads what a process or a server logged. Its zero value is
// an empty buffer ready to use.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *Buffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns a copy of what has been written so far.
func (s *Buffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
