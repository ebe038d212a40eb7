package scrub

import (
	"bytes"
	"encoding/base64"
	"io"
	"strings"
	"testing"
)

func TestString(t *testing.T) {
	tests := []struct {
		name    string
		secrets []string
		in      string
		want    string
	}{
		{name: "none", secrets: nil, in: "token=abcd1234", want: "token=abcd1234"},
		{name: "one", secrets: []string{"abcd1234"}, in: "token=abcd1234 again abcd1234", want: "token=*** again ***"},
		{name: "short ignored", secrets: []string{"ab"}, in: "abab", want: "abab"},
		{name: "longest first", secrets: []string{"pass", "password1"}, in: "password1 pass", want: "*** ***"},
		{name: "one secret the hex of another", secrets: []string{"abcd", "61626364", "abcd"}, in: "abcd 61626364 %61bcd", want: "*** *** ***"},
		{name: "artifact name", secrets: []string{"s3cr3t"}, in: "artifacts/dump-s3cr3t.txt", want: "artifacts/dump-***.txt"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := New(tt.secrets).String(tt.in); got != tt.want {
				t.Errorf("String(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

// TestWriterSplits cuts the stream at every position: a secret split
// across two writes (two live log chunks) must never come out whole or in
// part.
func TestWriterSplits(t *testing.T) {
	secrets := []string{"hunter2hunter2", "tok-XYZW"}
	in := "start hunter2hunter2 middle tok-XYZW hunter2 end tok-XYZ"
	want := "start *** middle *** hunter2 end tok-XYZ"
	for cut := 0; cut <= len(in); cut++ {
		for cut2 := cut; cut2 <= len(in); cut2 += 3 {
			var out bytes.Buffer
			w := New(secrets).NewWriter(&out)
			for _, part := range []string{in[:cut], in[cut:cut2], in[cut2:]} {
				if n, err := w.Write([]byte(part)); err != nil || n != len(part) {
					t.Fatalf("Write = %d, %v", n, err)
				}
				if strings.Contains(out.String(), "hunter2hunter2") || strings.Contains(out.String(), "XYZW") {
					t.Fatalf("cuts %d,%d: secret leaked: %q", cut, cut2, out.String())
				}
			}
			w.Flush()
			if out.String() != want {
				t.Fatalf("cuts %d,%d: got %q, want %q", cut, cut2, out.String(), want)
			}
		}
	}
}

func TestWriterPassesPlainTextAtOnce(t *testing.T) {
	var out bytes.Buffer
	w := New([]string{"secretvalue"}).NewWriter(&out)
	w.Write([]byte("line one\nline two\n"))
	if out.String() != "line one\nline two\n" {
		t.Errorf("plain text held back: %q", out.String())
	}
	w.Write([]byte("x secr"))
	if out.String() != "line one\nline two\nx " {
		t.Errorf("a possible secret start was not held back: %q", out.String())
	}
}

// fuzzSecrets are the values of FuzzWriter and the form tests: one plain,
// one whose URL, markup and base64 forms differ by alphabet and escaping.
var fuzzSecrets = []string{"secretvalue", "p@ss/w+rd?~&\"<\xfb\xff"}

// FuzzWriter cuts a stream into writes as the fuzzer likes: whatever the
// cuts, no form of a secret comes out (scrubbing the output again changes
// nothing), and the stream is scrubbed exactly as the whole text would be.
func FuzzWriter(f *testing.F) {
	f.Add("abc secretvalue def", []byte{3})
	for _, form := range New(fuzzSecrets).Forms() {
		f.Add("x "+form+" y"+form[:len(form)/2], []byte{1, 5, 2})
	}
	f.Add("u=s%65%63%72%65%74%76%61%6c%75%65&secretva%6Cue", []byte{4, 9})
	f.Add("log: "+base64.StdEncoding.EncodeToString([]byte("token=secretvalue&x=1")), []byte{7, 7, 7})
	f.Fuzz(func(t *testing.T, in string, cuts []byte) {
		s := New(fuzzSecrets)
		var out bytes.Buffer
		w := s.NewWriter(&out)
		rest := in
		for _, c := range cuts {
			n := min(int(c), len(rest))
			w.Write([]byte(rest[:n]))
			rest = rest[n:]
		}
		w.Write([]byte(rest))
		w.Flush()
		for _, form := range s.Forms() {
			if strings.Contains(out.String(), form) {
				t.Fatalf("form %q of a secret in the output %q", form, out.String())
			}
		}
		if again := s.String(out.String()); again != out.String() {
			t.Fatalf("the output %q still holds a form: scrubbed again, %q", out.String(), again)
		}
		if got, want := out.String(), s.String(in); got != want {
			t.Errorf("stream %q, whole %q", got, want)
		}
	})
}

// BenchmarkWriter scrubs ordinary log text for three secrets, in all their
// forms: the cost every byte of a task with secrets pays.
func BenchmarkWriter(b *testing.B) {
	line := []byte("ok 17 - TestSomething/with_a_subtest (0.03s) 2026-12-02T16:59:00Z deadbeef0123 aGVsbG8gd29ybGQ=\n")
	w := New([]string{"secretvalue", "ghp_16C7e42F292c6912E7710c838347Ae178B4a", "p@ss/w+rd"}).NewWriter(io.Discard)
	b.SetBytes(int64(len(line)))
	for b.Loop() {
		w.Write(line)
	}
}
