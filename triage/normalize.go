package triage

import "sort"

// Placeholders that Normalize puts in place of noise. They contain '<' and
// '>', which no rule matches, so normalizing twice changes nothing.
const (
	phTime = "<time>"
	phIP   = "<ip>"
	phPort = "<port>"
	phMAC  = "<mac>"
	phHex  = "<hex>"
	phUUID = "<uuid>"
	phPID  = "<pid>"
	phPath = "<path>"
	phDur  = "<dur>"
)

// Map maps offsets in normalized text back to the text it came from.
type Map struct {
	reps []rep // in order of out (and of in)
}

// rep is one replacement: src[in:inEnd] became out[out:outEnd].
type rep struct{ out, outEnd, in, inEnd int }

func (m *Map) reset() { m.reps = m.reps[:0] }

func (m *Map) add(out, outEnd, in, inEnd int) {
	m.reps = append(m.reps, rep{out, outEnd, in, inEnd})
}

// Orig returns the offset in the original text of offset o of the
// normalized text. An offset inside a placeholder maps to the start of
// what it replaced. Orig is monotonic in o.
func (m *Map) Orig(o int) int {
	i := sort.Search(len(m.reps), func(i int) bool { return m.reps[i].out > o }) - 1
	if i < 0 {
		return o
	}
	r := m.reps[i]
	if o < r.outEnd {
		return r.in
	}
	return r.inEnd + o - r.outEnd
}

// Normalize returns src with noise replaced by placeholders, so that a
// pattern written against one log matches the same failure in another:
//
//	absolute paths      /var/lib/x/disk.img  -> <path>/disk.img (the basename stays)
//	timestamps          2024-05-01T12:00:01.5Z, Dec  3 02:25:26, 02:25:26.123 -> <time>
//	kernel times        [   12.345678]  -> [<time>]
//	PIDs                sshd[1234], pid 1234, pid=1234 -> sshd[<pid>], pid <pid>, pid=<pid>
//	IP addresses        10.0.2.15, fe80::1  -> <ip>; a port after one -> <ip>:<port>, <ip> port <port>
//	MAC addresses       52:54:00:12:34:56   -> <mac>
//	UUIDs               8-4-4-4-12 hex      -> <uuid>
//	hex ids, long numbers  ≥ 8 hex digits, optionally 0x  -> <hex>
//	durations           0.123s, 12ms, 3min  -> <dur>
//
// Normalize(Normalize(x)) == Normalize(x). The Map gives, for an offset
// in the result, the offset in src.
func Normalize(src []byte) ([]byte, *Map) {
	m := &Map{}
	return normalize(nil, src, m), m
}

// normalize appends the normalized src to dst (which must be empty or
// have its offsets counted from its start: m records offsets in dst).
func normalize(dst, src []byte, m *Map) []byte {
	n := len(src)
	for i := 0; i < n; {
		c := src[i]
		if isWord(c) {
			// A word starts here: the byte before it (in dst) is no word
			// byte, since words are copied whole.
			var prev byte
			if len(dst) > 0 {
				prev = dst[len(dst)-1]
			}
			if ph, end, tail := wordRule(src, i, prev); end > i {
				start := len(dst)
				dst = append(dst, ph...)
				m.add(start, len(dst), i, end)
				i = end
				if tail != "" {
					dst, i = portAfter(dst, src, i, tail, m)
				}
				continue
			}
			j := i + 1
			for j < n && isWord(src[j]) {
				j++
			}
			dst = append(dst, src[i:j]...)
			isPID := j-i == 3 && c|0x20 == 'p' && src[i+1]|0x20 == 'i' && src[i+2]|0x20 == 'd'
			i = j
			if isPID {
				if ns, ne := pidNumber(src, i); ns > 0 {
					dst = append(dst, src[i:ns]...)
					start := len(dst)
					dst = append(dst, phPID...)
					m.add(start, len(dst), ns, ne)
					i = ne
				}
			}
			continue
		}
		var prev byte = '\n'
		if len(dst) > 0 {
			prev = dst[len(dst)-1]
		}
		switch c {
		case '/':
			if pathStart(prev) {
				if end := pathDir(src, i); end > i {
					start := len(dst)
					dst = append(dst, phPath...)
					m.add(start, len(dst), i, end)
					i = end
					continue
				}
			}
		case '[':
			if end := kernelTime(src, i); end > i {
				dst = append(dst, '[')
				start := len(dst)
				dst = append(dst, phTime...)
				m.add(start, len(dst), i+1, end-1)
				dst = append(dst, ']')
				i = end
				continue
			}
			if isWord(prev) {
				if end := digits(src, i+1); end > i+1 && end < n && src[end] == ']' {
					dst = append(dst, '[')
					start := len(dst)
					dst = append(dst, phPID...)
					m.add(start, len(dst), i+1, end)
					i = end
					continue
				}
			}
		case ':':
			if !isWord(prev) && prev != ':' && i+2 < n && src[i+1] == ':' && isHex(src[i+2]) {
				if end := ipv6(src, i); end > i {
					start := len(dst)
					dst = append(dst, phIP...)
					m.add(start, len(dst), i, end)
					dst, i = portAfter(dst, src, end, "]:", m)
					continue
				}
			}
		}
		dst = append(dst, c)
		i++
	}
	return dst
}

// portAfter replaces the port number that follows an address ":22" or
// " port 22" (tail says which forms apply).
func portAfter(dst, src []byte, i int, tail string, m *Map) ([]byte, int) {
	n := len(src)
	sep := 0
	switch {
	case i+1 < n && src[i] == ':' && (tail == ":" || tail == "both"):
		sep = 1
	case i+2 < n && src[i] == ']' && src[i+1] == ':' && tail == "]:":
		sep = 2
	case tail == "both" && hasPrefix(src[i:], " port "):
		sep = len(" port ")
	}
	if sep == 0 {
		return dst, i
	}
	end := digits(src, i+sep)
	if end == i+sep || end-(i+sep) > 5 || (end < n && isWord(src[end])) {
		return dst, i
	}
	dst = append(dst, src[i:i+sep]...)
	start := len(dst)
	dst = append(dst, phPort...)
	m.add(start, len(dst), i+sep, end)
	return dst, end
}

// wordRule tries the rules that start at a word's first byte. It returns
// the placeholder, the end of what it replaces (i when none applies) and
// which port forms may follow. prev is the byte before, in the output.
func wordRule(src []byte, i int, prev byte) (ph string, end int, tail string) {
	c := src[i]
	h := hexRun(src, i)
	d := digits(src, i) - i
	if h >= 8 {
		if e := uuid(src, i); e > i {
			return phUUID, e, ""
		}
	}
	if h == 2 && at(src, i+2) == ':' {
		if e := mac(src, i); e > i {
			return phMAC, e, ""
		}
	}
	if h >= 1 && h <= 4 && at(src, i+h) == ':' {
		if e := ipv6(src, i); e > i {
			return phIP, e, "]:"
		}
	}
	if d >= 1 && d <= 3 && at(src, i+d) == '.' && prev != '.' {
		if e := ipv4(src, i); e > i {
			return phIP, e, "both"
		}
	}
	if d == 4 && at(src, i+4) == '-' {
		if e := iso(src, i); e > i {
			return phTime, e, ""
		}
	}
	if d >= 1 && d <= 2 && at(src, i+d) == ':' {
		if e := clock(src, i); e > i && boundary(src, e) {
			return phTime, e, ""
		}
	}
	if d >= 1 {
		if e := duration(src, i); e > i {
			return phDur, e, ""
		}
	}
	if h >= 8 && boundary(src, i+h) {
		return phHex, i + h, ""
	}
	if c == '0' && (at(src, i+1) == 'x' || at(src, i+1) == 'X') {
		if h := hexRun(src, i+2); h >= 4 && boundary(src, i+2+h) {
			return phHex, i + 2 + h, ""
		}
	}
	if c >= 'A' && c <= 'S' {
		if e := syslog(src, i); e > i {
			return phTime, e, ""
		}
	}
	return "", i, ""
}

func at(s []byte, i int) byte {
	if i < len(s) {
		return s[i]
	}
	return 0
}

func hasPrefix(s []byte, p string) bool { return len(s) >= len(p) && string(s[:len(p)]) == p }

func isWord(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_'
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func isHex(c byte) bool { return isDigit(c) || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' }

// boundary reports whether a token may end before s[i]. Not before a
// placeholder's '<': what follows may have been something else before it
// was normalized, and normalizing again must change nothing.
func boundary(s []byte, i int) bool { return i >= len(s) || !isWord(s[i]) && s[i] != '<' }

func digits(s []byte, i int) int {
	for i < len(s) && isDigit(s[i]) {
		i++
	}
	return i
}

func hexRun(s []byte, i int) int {
	j := i
	for j < len(s) && isHex(s[j]) {
		j++
	}
	return j - i
}

// exactHex returns the end of exactly n hex digits at i, or -1.
func exactHex(s []byte, i, n int) int {
	if hexRun(s, i) != n {
		return -1
	}
	return i + n
}

func uuid(s []byte, i int) int {
	j := i
	for k, n := range []int{8, 4, 4, 4, 12} {
		if k > 0 {
			if at(s, j) != '-' {
				return i
			}
			j++
		}
		if j = exactHex(s, j, n); j < 0 {
			return i
		}
	}
	if !boundary(s, j) {
		return i
	}
	return j
}

func mac(s []byte, i int) int {
	j := i
	for k := 0; k < 6; k++ {
		if k > 0 {
			if at(s, j) != ':' {
				return i
			}
			j++
		}
		if j = exactHex(s, j, 2); j < 0 {
			return i
		}
	}
	if !boundary(s, j) || at(s, j) == ':' {
		return i
	}
	return j
}

// ipv6 matches an IPv6 address at i: hex groups of 1-4 digits separated
// by ':', with one "::" or eight groups, containing a decimal digit (so
// that C++'s "std::bad" stays).
func ipv6(s []byte, i int) int {
	j, groups, double, digit := i, 0, false, false
	if at(s, j) == ':' {
		if at(s, j+1) != ':' {
			return i
		}
		double = true
		j += 2
	}
	for {
		h := hexRun(s, j)
		if h > 4 {
			return i
		}
		if h == 0 {
			break
		}
		for _, c := range s[j : j+h] {
			digit = digit || isDigit(c)
		}
		j += h
		if groups++; groups > 8 {
			return i
		}
		if at(s, j) == ':' && at(s, j+1) == ':' {
			if double {
				return i
			}
			double = true
			j += 2
			continue
		}
		if at(s, j) == ':' && isHex(at(s, j+1)) {
			j++
			continue
		}
		break
	}
	if groups == 0 || !digit || !(double || groups == 8) {
		return i
	}
	if !boundary(s, j) || at(s, j) == ':' || at(s, j) == '.' {
		return i
	}
	return j
}

func ipv4(s []byte, i int) int {
	j := i
	for k := 0; k < 4; k++ {
		if k > 0 {
			if at(s, j) != '.' {
				return i
			}
			j++
		}
		e := digits(s, j)
		if e == j || e-j > 3 {
			return i
		}
		j = e
	}
	if c := at(s, j+1); !boundary(s, j) || (at(s, j) == '.' && (isDigit(c) || c == '<')) {
		return i
	}
	return j
}

// twoDigits returns the end of exactly two digits at i, or -1.
func twoDigits(s []byte, i int) int {
	if digits(s, i) != i+2 {
		return -1
	}
	return i + 2
}

// clock matches H:MM or HH:MM:SS with optional fraction at i.
func clock(s []byte, i int) int {
	j := digits(s, i)
	if j-i < 1 || j-i > 2 || at(s, j) != ':' {
		return i
	}
	if j = twoDigits(s, j+1); j < 0 {
		return i
	}
	if at(s, j) != ':' {
		return i // H:MM alone is too often something else (a ratio, a line:col)
	}
	if j = twoDigits(s, j+1); j < 0 {
		return i
	}
	if c := at(s, j+1); (at(s, j) == '.' || at(s, j) == ',') && (isWord(c) || c == '<') {
		e := digits(s, j+1)
		if e == j+1 {
			return i
		}
		j = e
	}
	return j
}

// iso matches an ISO 8601 date, optionally with a time and a zone.
func iso(s []byte, i int) int {
	j := i + 4
	for k := 0; k < 2; k++ {
		if at(s, j) != '-' {
			return i
		}
		if j = twoDigits(s, j+1); j < 0 {
			return i
		}
	}
	if (at(s, j) == 'T' || at(s, j) == ' ') && at(s, j+1) == '<' {
		return i // its time was normalized alone: so must the date be
	}
	if (at(s, j) == 'T' || at(s, j) == ' ') && isDigit(at(s, j+1)) {
		// A date and a time, or nothing: a date alone here would leave
		// the time to be normalized alone, and the next pass to take the
		// date then.
		e := clock(s, j+1)
		if e == j+1 {
			return i
		}
		j = e
		switch c := at(s, j); {
		case c == 'Z':
			j++
		case c == '+' || c == '-':
			if e := twoDigits(s, j+1); e > 0 {
				if at(s, e) == ':' {
					if e2 := twoDigits(s, e+1); e2 > 0 {
						e = e2
					}
				} else if e2 := twoDigits(s, e); e2 > 0 {
					e = e2
				}
				j = e
			}
		}
	}
	if !boundary(s, j) {
		return i
	}
	return j
}

var months = [...]string{"Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"}

// syslog matches "Dec  3 02:25:26" at i.
func syslog(s []byte, i int) int {
	if i+15 > len(s) || s[i+3] != ' ' {
		return i
	}
	ok := false
	for _, m := range months {
		if string(s[i:i+3]) == m {
			ok = true
			break
		}
	}
	if !ok {
		return i
	}
	d0, d1 := s[i+4], s[i+5]
	if !(d0 == ' ' || isDigit(d0)) || !isDigit(d1) || s[i+6] != ' ' {
		return i
	}
	e := clock(s, i+7)
	if e == i+7 || !boundary(s, e) {
		return i
	}
	return e
}

var units = [...]string{"ns", "us", "µs", "ms", "min", "s", "h"}

// duration matches a number with a unit of time, such as 0.123s.
func duration(s []byte, i int) int {
	j := digits(s, i)
	if at(s, j) == '.' {
		e := digits(s, j+1)
		if e == j+1 {
			return i
		}
		j = e
	}
	for _, u := range units {
		if hasPrefix(s[j:], u) && boundary(s, j+len(u)) {
			return j + len(u)
		}
	}
	return i
}

// pidNumber matches the number after the word "pid" ending at i: in
// "pid 1234", "PID=1234", "pid: 1234". It returns the number's start and
// end, or -1.
func pidNumber(s []byte, i int) (int, int) {
	j := i
	for j < len(s) && j-i < 2 && (s[j] == ' ' || s[j] == '=' || s[j] == ':') {
		j++
	}
	e := digits(s, j)
	if j == i || e == j || !boundary(s, e) {
		return -1, -1
	}
	return j, e
}

// kernelTime matches "[    1.234567]" at i.
func kernelTime(s []byte, i int) int {
	j := i + 1
	for at(s, j) == ' ' {
		j++
	}
	e := digits(s, j)
	if e == j || at(s, e) != '.' {
		return i
	}
	f := digits(s, e+1)
	if f-(e+1) < 3 || at(s, f) != ']' {
		return i
	}
	return f + 1
}

// pathStart reports whether a path may start after prev.
func pathStart(prev byte) bool {
	switch prev {
	case ' ', '\t', '\n', '\r', '"', '\'', '`', '=', '(', '[', ',':
		return true
	}
	return false
}

func isPathByte(c byte) bool {
	return isWord(c) || c == '.' || c == '-' || c == '+' || c == '@' || c == '%' || c == '~'
}

// pathDir returns the end of the directory part of an absolute path at i
// ("/var/lib" of "/var/lib/disk.img"), or i when it has no directory.
func pathDir(s []byte, i int) int {
	lastSlash := -1
	j := i
	for j < len(s) && (s[j] == '/' || isPathByte(s[j])) {
		if s[j] == '/' {
			if j > i && s[j-1] == '/' {
				return i // "//": a URL's or a comment's, not a path
			}
			if j > i {
				lastSlash = j
			}
		}
		j++
	}
	if lastSlash < 0 || at(s, j) == '<' {
		return i // or a placeholder took part of it, and this pass must not take the rest
	}
	return lastSlash
}
