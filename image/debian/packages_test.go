package debian

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/turtles-ci/turtles/config"
	"github.com/turtles-ci/turtles/image"
)

func TestParsePackages(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    []string
		wantErr bool
	}{
		{name: "empty", in: "", want: nil},
		{name: "blank", in: "  ", want: nil},
		{name: "one", in: "etcd-server", want: []string{"etcd-server"}},
		{name: "sorted and deduplicated", in: "nginx, etcd-server,nginx", want: []string{"etcd-server", "nginx"}},
		{name: "plus and dots", in: "g++,libstdc++6,python3.11", want: []string{"g++", "libstdc++6", "python3.11"}},
		{name: "digit first", in: "0ad", want: []string{"0ad"}},
		{name: "empty item", in: "hello,,nginx", wantErr: true},
		{name: "trailing comma", in: "hello,", wantErr: true},
		{name: "one character", in: "a", wantErr: true},
		{name: "upper case", in: "Hello", wantErr: true},
		{name: "option", in: "-o=APT::Foo", wantErr: true},
		{name: "starts with plus", in: "+x", wantErr: true},
		{name: "version", in: "hello=2.10-3", wantErr: true},
		{name: "release", in: "hello/bookworm", wantErr: true},
		{name: "architecture", in: "hello:amd64", wantErr: true},
		{name: "space inside", in: "hello world", wantErr: true},
		{name: "shell", in: "hello;reboot", wantErr: true},
		{name: "underscore", in: "hello_1", wantErr: true},
		{name: "too long", in: strings.Repeat("a", maxPackageName+1), wantErr: true},
		{name: "too many", in: manyPackages(MaxPackages + 1), wantErr: true},
		{name: "as many as allowed", in: manyPackages(MaxPackages), want: strings.Split(manyPackages(MaxPackages), ",")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParsePackages(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("ParsePackages(%q) error = %v, want error %v", tt.in, err, tt.wantErr)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("ParsePackages(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func manyPackages(n int) string {
	var p []string
	for i := range n {
		p = append(p, fmt.Sprintf("p%03d", i))
	}
	return strings.Join(p, ",")
}

func TestName(t *testing.T) {
	tests := []struct {
		name     string
		packages []string
		want     string
	}{
		{name: "no packages", packages: nil, want: "debian-12"},
		{name: "one", packages: []string{"etcd-server"}, want: "debian-12_etcd-server"},
		{name: "two", packages: []string{"etcd-server", "nginx"}, want: "debian-12_etcd-server_nginx"},
		{name: "plus", packages: []string{"g++"}, want: "debian-12__" + "hashed"},
		{name: "longer than an image name", packages: []string{strings.Repeat("a", 91)}, want: "debian-12__" + "hashed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Name("debian-12", tt.packages)
			if strings.HasSuffix(tt.want, "__hashed") {
				if !strings.HasPrefix(got, "debian-12__") || len(got) != len("debian-12__")+16 {
					t.Errorf("Name = %q, want debian-12__ and 16 hex digits", got)
				}
			} else if got != tt.want {
				t.Errorf("Name = %q, want %q", got, tt.want)
			}
			if !image.ValidName(got) {
				t.Errorf("Name = %q is not a valid image name", got)
			}
		})
	}
	// Different lists never share a hashed name in practice; check the
	// two forms do not meet: a readable name has no "__".
	if a, b := Name("debian-12", []string{"g++"}), Name("debian-12", []string{"g++", "hello"}); a == b {
		t.Errorf("different package lists share the name %q", a)
	}
}

// FuzzParsePackages: whatever the input, ParsePackages does not panic,
// and what it accepts is a sorted list of unique valid names that yields
// a valid image name and parses back to itself.
func FuzzParsePackages(f *testing.F) {
	for _, s := range []string{"", "etcd-server", "nginx,etcd-server", "g++,hello", "-o,x", "a,b", "hello=1", " x1 , y2 ", "hello,,x", strings.Repeat("a,", 200)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		pkgs, err := ParsePackages(s)
		if err != nil {
			return
		}
		if !slices.IsSorted(pkgs) || len(slices.Compact(slices.Clone(pkgs))) != len(pkgs) || len(pkgs) > MaxPackages {
			t.Fatalf("ParsePackages(%q) = %q: not sorted, unique and bounded", s, pkgs)
		}
		for _, p := range pkgs {
			if !ValidPackage(p) || strings.ContainsAny(p, " ,=:/_") || p[0] == '-' {
				t.Fatalf("ParsePackages(%q) accepted %q", s, p)
			}
		}
		if n := Name("debian-12", pkgs); !image.ValidName(n) {
			t.Fatalf("Name(%q) = %q, not a valid image name", pkgs, n)
		}
		back, err := ParsePackages(strings.Join(pkgs, ","))
		if err != nil || !slices.Equal(back, pkgs) {
			t.Fatalf("ParsePackages(join(%q)) = %q, %v", pkgs, back, err)
		}
	})
}

// TestNameInConfig: a .turtles.yaml context names a derived image by its
// Name as it is, hashed or not, with no new syntax.
func TestNameInConfig(t *testing.T) {
	for _, pkgs := range [][]string{{"etcd-server"}, {"etcd-server", "nginx"}, {"g++"}} {
		name := Name("debian-12", pkgs)
		c, err := config.Parse(".turtles.yaml", []byte("contexts:\n  - name: etcd\n    command: make\n    image: "+name+"\n"))
		if err != nil {
			t.Fatalf("a context with image %s: %v", name, err)
		}
		if got := c.Contexts[0].Image; got != name {
			t.Errorf("context image = %q, want %q", got, name)
		}
	}
}

func TestUnescapeMount(t *testing.T) {
	for in, want := range map[string]string{
		"/var/tmp/x":          "/var/tmp/x",
		`/var/tmp/a\040b`:     "/var/tmp/a b",
		`/a\134b`:             `/a\b`,
		`/end\04`:             `/end\04`,
		`/x\0401\011tab\012n`: "/x 1\ttab\nn",
	} {
		if got := unescapeMount(in); got != want {
			t.Errorf("unescapeMount(%q) = %q, want %q", in, got, want)
		}
	}
}
