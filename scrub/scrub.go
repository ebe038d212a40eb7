// Package scrub removes secret values from text before it leaves a bot:
// log chunks, artifacts, artifact names, results. The bot imports it;
// secrets are given by value, resolved elsewhere, and never logged.
//
// A secret is masked in the forms a program prints by accident (see
// forms.go): as it is, hex, URL-escaped and base64, including base64 of a
// longer stream that holds it. Anything else (a secret reversed, split by
// the program, compressed, hashed) is not recognised: docs/trust.md.
package scrub

import (
	"bytes"
	"io"
	"sort"
)

// Mask replaces every secret value.
const Mask = "***"

// minLen is the shortest value (and encoded form) scrubbed: masking "a" or
// "1" everywhere would destroy logs and hide nothing.
const minLen = 4

// Scrubber knows the secret values of one attempt.
type Scrubber struct {
	// byFirst holds every form of every secret by its first byte, longest
	// first, so that at one position the longest form wins.
	byFirst [256][][]byte
	// byFirstURL holds the secrets by the bytes their URL-escaped forms can
	// start with, for urlMatch.
	byFirstURL [256][][]byte
	n          int
}

// New returns a Scrubber for values; values shorter than 4 bytes and
// duplicates are ignored. A nil or empty list scrubs nothing.
func New(values []string) *Scrubber {
	seen, seenValue := map[string]bool{}, map[string]bool{}
	s := &Scrubber{}
	for _, v := range values {
		if len(v) < minLen || seenValue[v] {
			continue
		}
		seenValue[v] = true
		sec := []byte(v)
		for _, c := range []byte{sec[0], '%', '+'} {
			if c != '+' || sec[0] == ' ' {
				s.byFirstURL[c] = append(s.byFirstURL[c], sec)
			}
		}
		for _, f := range forms(v) {
			if len(f) < minLen || seen[f] {
				continue
			}
			seen[f] = true
			s.byFirst[f[0]] = append(s.byFirst[f[0]], []byte(f))
			s.n++
		}
	}
	for _, fs := range s.byFirst {
		sort.SliceStable(fs, func(i, j int) bool { return len(fs[i]) > len(fs[j]) })
	}
	return s
}

// Empty reports whether there is nothing to scrub.
func (s *Scrubber) Empty() bool { return s == nil || s.n == 0 }

// Forms lists the exact strings the scrubber masks, for tests that check
// that none of them got through. (URL escapings other than Go's are found
// by urlMatch, and not listed.)
func (s *Scrubber) Forms() []string {
	var out []string
	if s.Empty() {
		return out
	}
	for _, fs := range s.byFirst {
		for _, f := range fs {
			out = append(out, string(f))
		}
	}
	return out
}

// String scrubs a whole string, such as an artifact name.
func (s *Scrubber) String(v string) string {
	if s.Empty() {
		return v
	}
	out, _ := s.scan(nil, []byte(v), true)
	return string(out)
}

// scan appends b to dst with every form masked, scanning left to right
// and taking the longest form that starts at each position. Unless final,
// it stops at the first position where the rest of b could still grow
// into a form longer than any that matches there, and returns that
// position: the bytes from there on wait for more input. Stream and whole
// text are scrubbed alike, however the stream is cut.
func (s *Scrubber) scan(dst, b []byte, final bool) ([]byte, int) {
	from := 0 // start of the bytes not yet copied to dst
	for i := 0; i < len(b); {
		cands, urls := s.byFirst[b[i]], s.byFirstURL[b[i]]
		if len(cands) == 0 && len(urls) == 0 {
			i++
			continue
		}
		rest, match := b[i:], 0
		for _, f := range cands {
			if len(f) <= len(rest) {
				if bytes.HasPrefix(rest, f) {
					match = len(f)
					break
				}
			} else if !final && bytes.HasPrefix(f, rest) {
				return append(dst, b[from:i]...), i
			}
		}
		for _, sec := range urls {
			n, more := urlMatch(sec, rest)
			if more && !final {
				return append(dst, b[from:i]...), i
			}
			match = max(match, n)
		}
		if match == 0 {
			i++
			continue
		}
		dst = append(append(dst, b[from:i]...), Mask...)
		i += match
		from = i
	}
	return append(dst, b[from:]...), len(b)
}

// urlMatch matches a URL-escaped form of sec at the start of b, whichever
// bytes the encoder chose to escape (they differ on ~ ! * ' ( ) and more):
// each byte of sec as itself or as %XX in either case, a space also as
// '+'. It returns the length matched, or 0 and whether b ended before a
// match could be told from none.
func urlMatch(sec, b []byte) (n int, more bool) {
	j := 0
	for _, c := range sec {
		if j >= len(b) {
			return 0, true
		}
		if b[j] == '%' {
			if j+1 >= len(b) || j+2 >= len(b) && isHex(b[j+1]) {
				return 0, true // an escape cut short
			}
			if isHex(b[j+1]) && isHex(b[j+2]) && unhex(b[j+1])<<4|unhex(b[j+2]) == c {
				j += 3
				continue
			}
		}
		if b[j] != c && (c != ' ' || b[j] != '+') {
			return 0, false
		}
		j++
	}
	return j, false
}

func isHex(c byte) bool { return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F' }

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c <= 'F':
		return c - 'A' + 10
	}
	return c - 'a' + 10
}

// Writer scrubs a stream. A secret split across writes (and so across log
// chunks) is still masked: bytes that could begin a form of a secret are
// held back until the next write shows whether they do, or until Flush.
// Ordinary text passes through at once.
type Writer struct {
	s   *Scrubber
	w   io.Writer
	buf []byte // held back
	out []byte // reused for the scrubbed bytes of one write
}

// NewWriter returns a Writer that writes the scrubbed stream to w.
func (s *Scrubber) NewWriter(w io.Writer) *Writer { return &Writer{s: s, w: w} }

// Write implements io.Writer. It reports len(p) written on success, even
// though the output length differs.
func (w *Writer) Write(p []byte) (int, error) {
	if w.s.Empty() {
		return w.w.Write(p)
	}
	w.buf = append(w.buf, p...)
	var done int
	w.out, done = w.s.scan(w.out[:0], w.buf, false)
	if len(w.out) > 0 {
		if _, err := w.w.Write(w.out); err != nil {
			return 0, err
		}
	}
	w.buf = append(w.buf[:0], w.buf[done:]...)
	return len(p), nil
}

// Flush writes what was held back, scrubbed: the stream has ended, so it
// is no longer the beginning of anything.
func (w *Writer) Flush() error {
	if len(w.buf) == 0 {
		return nil
	}
	w.out, _ = w.s.scan(w.out[:0], w.buf, true)
	w.buf = w.buf[:0]
	_, err := w.w.Write(w.out)
	return err
}

// Lines scrubs each of ss in place and returns it.
func (s *Scrubber) Lines(ss []string) []string {
	for i, v := range ss {
		ss[i] = s.String(v)
	}
	return ss
}
