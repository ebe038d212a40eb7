package scrub

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"html"
	"net/url"
	"strings"
)

// forms returns the encodings of secret that a program is likely to print
// by accident: the value itself, hex (lower and upper case), URL escaping
// (query and path, with upper or lower case escapes), HTML, XML and JSON
// escaping, and base64 (standard and URL alphabets). Each may repeat; New drops duplicates and forms
// shorter than minLen. Other URL escapings (encoders disagree on which
// bytes to escape) are found by urlMatch.
func forms(secret string) []string {
	out := []string{
		secret,
		hex.EncodeToString([]byte(secret)),
		strings.ToUpper(hex.EncodeToString([]byte(secret))),
	}
	for _, esc := range []string{url.QueryEscape(secret), url.PathEscape(secret)} {
		out = append(out, esc, lowerEscapes(esc))
	}
	// A secret with < > & ' " or \ reads differently in a JUnit or HTML
	// report and in JSON: escaped as the usual encoders do.
	out = append(out, html.EscapeString(secret), xmlNamed.Replace(secret), xmlText.Replace(secret),
		jsonEscaped(secret, true), jsonEscaped(secret, false))
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding} {
		// The whole encoding, when the secret is all that was encoded.
		out = append(out, enc.EncodeToString([]byte(secret)), enc.WithPadding(base64.NoPadding).EncodeToString([]byte(secret)))
		for offset := range 3 {
			out = append(out, base64Inner(enc, secret, offset))
		}
	}
	return out
}

// base64Inner is the part of the base64 text of any stream that holds
// secret at a byte offset of offset mod 3 which does not depend on the
// bytes around it. Base64 maps 3 bytes to 4 characters, so the text of the
// same secret differs with its alignment; the characters at either end
// that mix bits of a neighbouring byte are left out (at most 3 at the
// start and 1 at the end). Those leak a few bits, never the secret.
func base64Inner(enc *base64.Encoding, secret string, offset int) string {
	b := make([]byte, offset+len(secret))
	copy(b[offset:], secret)
	s := enc.WithPadding(base64.NoPadding).EncodeToString(b)
	// offset 1: characters 0 and 1 hold bits of the byte before; offset 2:
	// characters 0 to 2.
	start := [3]int{0, 2, 3}[offset]
	end := len(s)
	if len(b)%3 != 0 {
		end-- // the last character takes bits of the byte after
	}
	if end <= start {
		return ""
	}
	return s[start:end]
}

var (
	// xmlNamed escapes as most XML writers do; html.EscapeString (and Go's
	// encoding/xml) use &#34; and &#39; instead.
	xmlNamed = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;", "'", "&apos;")
	// xmlText escapes what text between tags must (Python's saxutils).
	xmlText = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;")
)

// jsonEscaped is secret as it appears inside a JSON string, with < > &
// escaped as Go does by default or not.
func jsonEscaped(secret string, escapeHTML bool) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(escapeHTML)
	enc.Encode(secret)
	return strings.TrimSuffix(strings.TrimPrefix(strings.TrimSuffix(b.String(), "\n"), `"`), `"`)
}

// lowerEscapes writes the %XX escapes of s in lower case, as some
// encoders (and people) do.
func lowerEscapes(s string) string {
	b := []byte(s)
	for i := 0; i+2 < len(b); i++ {
		if b[i] == '%' {
			b[i+1], b[i+2] = lower(b[i+1]), lower(b[i+2])
			i += 2
		}
	}
	return string(b)
}

func lower(c byte) byte {
	if 'A' <= c && c <= 'F' {
		return c + 'a' - 'A'
	}
	return c
}
