package scrub

import (
	"bytes"
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

func FuzzWriter(f *testing.F) {
	f.Add("abc secretvalue def", 3)
	f.Fuzz(func(t *testing.T, in string, cut int) {
		if cut < 0 || cut > len(in) {
			return
		}
		s := New([]string{"secretvalue"})
		var out bytes.Buffer
		w := s.NewWriter(&out)
		w.Write([]byte(in[:cut]))
		w.Write([]byte(in[cut:]))
		w.Flush()
		if got, want := out.String(), s.String(in); got != want {
			t.Errorf("stream %q, whole %q", got, want)
		}
	})
}
