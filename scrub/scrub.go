// Package scrub removes secret values from text before it leaves a bot:
// log chunks, artifact names, results. The bot imports it; secrets are
// given by value, resolved elsewhere, and never logged.
package scrub

import (
	"bytes"
	"io"
	"sort"
)

// Mask replaces every secret value.
const Mask = "***"

// minLen is the shortest value scrubbed: masking "a" or "1" everywhere
// would destroy logs and hide nothing.
const minLen = 4

// Scrubber knows the secret values of one attempt.
type Scrubber struct {
	secrets [][]byte // longest first, so that a secret containing another wins
}

// New returns a Scrubber for values; values shorter than 4 bytes and
// duplicates are ignored. A nil or empty list scrubs nothing.
func New(values []string) *Scrubber {
	seen := map[string]bool{}
	s := &Scrubber{}
	for _, v := range values {
		if len(v) < minLen || seen[v] {
			continue
		}
		seen[v] = true
		s.secrets = append(s.secrets, []byte(v))
	}
	sort.Slice(s.secrets, func(i, j int) bool { return len(s.secrets[i]) > len(s.secrets[j]) })
	return s
}

// Empty reports whether there is nothing to scrub.
func (s *Scrubber) Empty() bool { return s == nil || len(s.secrets) == 0 }

// String scrubs a whole string, such as an artifact name.
func (s *Scrubber) String(v string) string {
	if s.Empty() {
		return v
	}
	return string(s.replace([]byte(v)))
}

func (s *Scrubber) replace(b []byte) []byte {
	for _, sec := range s.secrets {
		if bytes.Contains(b, sec) {
			b = bytes.ReplaceAll(b, sec, []byte(Mask))
		}
	}
	return b
}

// held is how many bytes at the end of b could be the start of a secret
// that the next write completes.
func (s *Scrubber) held(b []byte) int {
	h := 0
	for _, sec := range s.secrets {
		for k := min(len(sec)-1, len(b)); k > h; k-- {
			if bytes.HasSuffix(b, sec[:k]) {
				h = k
				break
			}
		}
	}
	return h
}

// Writer scrubs a stream. A secret split across writes (and so across log
// chunks) is still masked: bytes that could begin a secret are held back
// until the next write shows whether they do, or until Flush. Ordinary
// text passes through at once.
type Writer struct {
	s   *Scrubber
	w   io.Writer
	buf []byte
}

// NewWriter returns a Writer that writes the scrubbed stream to w.
func (s *Scrubber) NewWriter(w io.Writer) *Writer { return &Writer{s: s, w: w} }

// Write implements io.Writer. It reports len(p) written on success, even
// though the output length differs.
func (w *Writer) Write(p []byte) (int, error) {
	if w.s.Empty() {
		return w.w.Write(p)
	}
	w.buf = w.s.replace(append(w.buf, p...))
	keep := w.s.held(w.buf)
	out := w.buf[:len(w.buf)-keep]
	if len(out) > 0 {
		if _, err := w.w.Write(out); err != nil {
			return 0, err
		}
	}
	w.buf = append(w.buf[:0], w.buf[len(w.buf)-keep:]...)
	return len(p), nil
}

// Flush writes what was held back: the stream has ended, so it is no
// secret's beginning.
func (w *Writer) Flush() error {
	if len(w.buf) == 0 {
		return nil
	}
	_, err := w.w.Write(w.buf)
	w.buf = w.buf[:0]
	return err
}

// Lines scrubs each of ss in place and returns it.
func (s *Scrubber) Lines(ss []string) []string {
	for i, v := range ss {
		ss[i] = s.String(v)
	}
	return ss
}
