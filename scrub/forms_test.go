package scrub

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"html"
	"math/rand/v2"
	"net/url"
	"strings"
	"testing"
)

// TestForms is the attack of a task that prints its secret encoded: every
// usual encoding is masked whole, and nothing else is touched.
func TestForms(t *testing.T) {
	const sec = "p@ss/w+rd?~x"    // escapes in URLs, +/ or -_ in base64
	const markup = `a&b<c>"d'e\f` // escapes in HTML, XML and JSON
	b64 := base64.StdEncoding.EncodeToString([]byte(sec))
	tests := []struct {
		name   string
		in     string
		secret string // default sec
		want   string
	}{
		{name: "plain", in: "v=" + sec + ";", want: "v=***;"},
		{name: "hex", in: "v=" + hex.EncodeToString([]byte(sec)) + ";", want: "v=***;"},
		{name: "HEX", in: "v=" + strings.ToUpper(hex.EncodeToString([]byte(sec))) + ";", want: "v=***;"},
		{name: "query escape", in: "https://h/?t=" + url.QueryEscape(sec) + "&x", want: "https://h/?t=***&x"},
		{name: "path escape", in: "https://h/" + url.PathEscape(sec) + "/x", want: "https://h/***/x"},
		{name: "lower case escapes", in: "t=" + strings.ToLower(url.QueryEscape(sec)) + "&x", want: "t=***&x"},
		{name: "every byte escaped", in: "t=" + escapeAll(sec, "%%%02X") + "&x", want: "t=***&x"},
		{name: "some escaped, mixed case", in: "t=p%40ss%2fw%2Brd%3F%7ex&y", want: "t=***&y"},
		{name: "a space as +", in: "t=" + url.QueryEscape("open sesame") + "&x", secret: "open sesame", want: "t=***&x"},
		{name: "escape of another byte", in: "t=p%41ss/w+rd?~x", want: "t=p%41ss/w+rd?~x"},
		{name: "a lone %", in: "100% p@ss/w+rd?~x%", want: "100% ***%"},
		{name: "base64", in: "v=" + b64 + ";", want: "v=***;"},
		{name: "base64 unpadded", in: "v=" + strings.TrimRight(b64, "=") + ";", want: "v=***;"},
		{name: "base64 URL", in: "v=" + base64.URLEncoding.EncodeToString([]byte(sec)) + ";", want: "v=***;"},
		{name: "HTML", in: "<td>" + html.EscapeString(markup) + "</td>", secret: markup, want: "<td>***</td>"},
		{name: "XML attribute", in: `<failure message="a&amp;b&lt;c&gt;&quot;d&apos;e\f">`, secret: markup, want: `<failure message="***">`},
		{name: "XML text", in: `<failure>a&amp;b&lt;c&gt;"d'e\f</failure>`, secret: markup, want: "<failure>***</failure>"},
		{name: "JSON", in: `{"m":"a\u0026b\u003cc\u003e\"d'e\\f"}`, secret: markup, want: `{"m":"***"}`},
		{name: "JSON unescaped HTML", in: `{"m":"a&b<c>\"d'e\\f"}`, secret: markup, want: `{"m":"***"}`},
		{name: "ordinary text", in: "nothing secret here: 0123456789abcdef", want: "nothing secret here: 0123456789abcdef"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			secret := sec
			if tt.secret != "" {
				secret = tt.secret
			}
			if got := New([]string{secret}).String(tt.in); got != tt.want {
				t.Errorf("String(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

// TestBase64InsideAStream is the attack of a task that prints the base64
// of a longer text holding its secret (an Authorization header, a JSON
// blob): at each of the three alignments, in both alphabets, with any
// bytes around it, all but the few characters shared with neighbouring
// bytes are masked.
func TestBase64InsideAStream(t *testing.T) {
	rnd := rand.New(rand.NewPCG(1, 2))
	for _, sec := range []string{"abcd", "secretvalue", "p@ss/w+rd?~\xfb\xff\xfe", strings.Repeat("Zq9", 11)} {
		s := New([]string{sec})
		for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding, base64.RawStdEncoding, base64.RawURLEncoding} {
			for before := range 7 {
				for range 20 {
					stream := make([]byte, before+len(sec)+rnd.IntN(5))
					for i := range stream {
						stream[i] = byte(rnd.Uint32())
					}
					copy(stream[before:], sec)
					in := enc.EncodeToString(stream)
					out := s.String(in)
					// Of the characters that carry the secret's bits, at
					// most 3 before and 1 after stay.
					if masked := len(in) - (len(out) - len(Mask)); !strings.Contains(out, Mask) || masked < len(sec)*4/3-4 {
						t.Fatalf("secret %q at byte %d of %x: %q scrubbed to %q", sec, before, stream, in, out)
					}
				}
			}
		}
	}
}

// TestWriterSplitsEveryForm cuts a stream holding every form of a secret at
// every pair of positions: no form ever comes out whole.
func TestWriterSplitsEveryForm(t *testing.T) {
	s := New([]string{"hunter2hunter2"})
	in := "start " + strings.Join(s.Forms(), " mid ") + " end"
	want := s.String(in)
	if strings.Count(want, Mask) != len(s.Forms()) {
		t.Fatalf("whole text: %q, want %d masks", want, len(s.Forms()))
	}
	for cut := 0; cut <= len(in); cut++ {
		for cut2 := cut; cut2 <= len(in); cut2 += 7 {
			var out bytes.Buffer
			w := s.NewWriter(&out)
			for _, part := range []string{in[:cut], in[cut:cut2], in[cut2:]} {
				w.Write([]byte(part))
			}
			w.Flush()
			if out.String() != want {
				t.Fatalf("cuts %d,%d: got %q, want %q", cut, cut2, out.String(), want)
			}
		}
	}
}

// escapeAll writes every byte of s with format, as the most eager URL
// encoders do.
func escapeAll(s, format string) string {
	var b strings.Builder
	for i := range len(s) {
		fmt.Fprintf(&b, format, s[i])
	}
	return b.String()
}
