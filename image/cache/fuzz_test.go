package cache

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"
)

// Manifests come from peers and mirrors: any bytes must give a clean
// error or a manifest whose files are plain names with hashes.
func FuzzManifest(f *testing.F) {
	f.Add([]byte(`{"name":"img","disk":"img-` + strings.Repeat("a", 64) + `.qcow2","sha256":"` + strings.Repeat("a", 64) + `"}`))
	f.Add([]byte(`{"name":"img","disk":"../etc/passwd","sha256":"` + strings.Repeat("a", 64) + `"}`))
	f.Add([]byte(`{"name":"img","disk":"d","sha256":"x","kernel":"k"}`))
	f.Add([]byte(`{"name":"img","disk":"d.json","sha256":"` + strings.Repeat("a", 64) + `","extra":1}`))
	f.Add([]byte(`{"name":"img","disk":"img-` + strings.Repeat("a", 64) + `.qcow2","sha256":"` + strings.Repeat("a", 64) + `","size":1048576}`))
	f.Add([]byte(`{"name":"img","disk":"d","sha256":"` + strings.Repeat("a", 64) + `","size":-1}`))
	f.Add([]byte(`{"name":"img","disk":"d","sha256":"` + strings.Repeat("a", 64) + `","size":1125899906842624}`))
	f.Add([]byte(`{"name":"img","disk":"d","sha256":"` + strings.Repeat("a", 64) + `","size":9223372036854775807,"kernel":"k","kernel_sha256":"` + strings.Repeat("b", 64) + `","kernel_size":9223372036854775807}`))
	f.Add([]byte(`{"name":"img","disk":"d","sha256":"` + strings.Repeat("a", 64) + `","size":1,"initrd_size":5}`))
	const max = 64 << 30
	f.Fuzz(func(t *testing.T, b []byte) {
		sum := sha256.Sum256(b)
		id := ID("img-" + hex.EncodeToString(sum[:]))
		m, files, err := parseManifest(id, b)
		if err != nil {
			return
		}
		if m.Name != "img" || len(files) == 0 {
			t.Fatalf("accepted %q: %+v", b, m)
		}
		for _, f := range files {
			if !plainName(f.Name) || strings.ContainsAny(f.Name, "/\\") || strings.HasPrefix(f.Name, ".") || !isHex(f.SHA256) || f.Size < 0 {
				t.Fatalf("accepted file %+v", f)
			}
		}
		// What a fetch would download: every size recorded, the sum
		// within the limit, whatever the numbers.
		if checkSizes(id, files, max) == nil {
			var total int64
			for _, f := range files {
				if f.Size <= 0 || total+f.Size < total {
					t.Fatalf("fetch would accept sizes %+v", files)
				}
				total += f.Size
			}
			if total > max {
				t.Fatalf("fetch would accept %d bytes, over the limit %d", total, max)
			}
		}
	})
}

func FuzzParseID(f *testing.F) {
	f.Add("debian-12-" + strings.Repeat("0", 64))
	f.Add("-" + strings.Repeat("0", 64))
	f.Add("../a-" + strings.Repeat("0", 64))
	f.Fuzz(func(t *testing.T, s string) {
		id, err := ParseID(s)
		if err != nil {
			return
		}
		if string(id) != id.Name()+"-"+id.Hash() || !isHex(id.Hash()) || id.Name() == "" || strings.Contains(s, "/") {
			t.Fatalf("ParseID(%q) = %q", s, id)
		}
	})
}

func FuzzContentRange(f *testing.F) {
	for _, s := range []string{"bytes 0-9/10", "bytes 5-9/*", "bytes -1-2/3", "bytes 9-1/5", "bytes", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		start, total, err := contentRange(s)
		if err == nil && (start < 0 || total != -1 && total < start) {
			t.Fatalf("contentRange(%q) = %d, %d", s, start, total)
		}
	})
}

func FuzzParsePeers(f *testing.F) {
	for _, s := range []string{"images.turtles.svc.cluster.local", "peers:9000", "[::1]:80", ":80", "a/b", "x:0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParsePeers(s)
		if err == nil && (p.Name == "" || p.Port < 1 || p.Port > 65535) {
			t.Fatalf("ParsePeers(%q) = %+v", s, p)
		}
	})
}
