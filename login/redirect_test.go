package login

import (
	"net/url"
	"strings"
	"testing"
)

func TestSafePath(t *testing.T) {
	for _, tt := range []struct {
		in, want string
		ok       bool
	}{
		{"/", "/", true},
		{"/tasks/0123456789abcdef/2", "/tasks/0123456789abcdef/2", true},
		{"/search?repo=octo%2Fhello&sha=abc", "/search?repo=octo%2Fhello&sha=abc", true},
		{"/tasks/x#frag", "/tasks/x", true},
		{"", "", false},
		{"tasks/x", "", false},
		{"//evil.example", "", false},
		{"/\\evil.example", "", false},
		{"/%2F/evil.example", "", false},
		{"/%5Cevil.example", "", false},
		{"https://evil.example/", "", false},
		{"javascript:alert(1)", "", false},
		{"/\tx", "", false},
		{"/x\r\nSet-Cookie: a=b", "", false},
		{"/caf\u00e9", "", false},
		{"/" + strings.Repeat("a", maxReturn), "", false},
	} {
		got, ok := safePath(tt.in)
		if got != tt.want || ok != tt.ok {
			t.Errorf("safePath(%q) = %q, %v; want %q, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}

// FuzzSafePath: whatever safePath accepts, a browser resolving it
// against this server (and then again, as a redirect's Location) stays
// on this server, and what it returns it accepts again unchanged.
func FuzzSafePath(f *testing.F) {
	for _, s := range []string{"/", "/tasks/x?a=b", "//evil", "/\\evil", "/%2F%2Fevil", "/..//evil", "/./\\evil", "/a/../..//evil", "/%09/evil"} {
		f.Add(s)
	}
	base, _ := url.Parse("https://ci.example/tasks/abc")
	f.Fuzz(func(t *testing.T, p string) {
		got, ok := safePath(p)
		if !ok {
			return
		}
		u, err := base.Parse(got)
		if err != nil {
			t.Fatalf("safePath(%q) = %q, which does not parse: %v", p, got, err)
		}
		if u.Host != "ci.example" || u.Scheme != "https" || u.User != nil {
			t.Fatalf("safePath(%q) = %q, which leads to %s", p, got, u)
		}
		// What a browser does with backslashes and tabs in a Location.
		b := strings.NewReplacer("\\", "/", "\t", "", "\n", "", "\r", "").Replace(got)
		if strings.HasPrefix(b, "//") {
			t.Fatalf("safePath(%q) = %q, which a browser reads as another host", p, got)
		}
		if again, ok := safePath(got); !ok || again != got {
			t.Fatalf("safePath(%q) = %q, but safePath of that = %q, %v", p, got, again, ok)
		}
	})
}
