package bot

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/turtles-ci/turtles/scrub"
	"github.com/turtles-ci/turtles/store"
)

// TestArtifactsScrubbed is the attack of a trusted task that writes its
// secret, in every usual encoding, into a JUnit report, a TAP file, the
// guest journal and an SVG, and hides it in a gzip file: the text files
// are stored scrubbed, the binary one not at all; without secrets every
// file is stored as it is.
func TestArtifactsScrubbed(t *testing.T) {
	leak := func(prefix string) string {
		return prefix + " plain=" + secretValue +
			" b64=" + base64.StdEncoding.EncodeToString([]byte("Bearer "+secretValue)) +
			" b64url=" + base64.URLEncoding.EncodeToString([]byte("x:"+secretValue)) +
			" query=" + url.QueryEscape(secretValue) + " path=" + url.PathEscape(secretValue) +
			" hex=" + hex.EncodeToString([]byte(secretValue)) + " HEX=" + strings.ToUpper(hex.EncodeToString([]byte(secretValue))) + "\n"
	}
	files := map[string]string{
		"junit.xml":      `<?xml version="1.0"?><testsuite><testcase name="t"><failure>` + leak("") + `</failure></testcase></testsuite>`,
		"tap/out.tap":    "TAP version 13\nnot ok 1 - " + leak("#"),
		"vm/journal.txt": strings.Repeat("Dec 02 17:00:00 guest systemd[1]: Started.\n", 100) + leak("Dec 02 guest app[42]:"),
		"plot.svg":       `<svg xmlns="http://www.w3.org/2000/svg"><text>` + leak("") + `</text></svg>`,
		"big.log":        strings.Repeat("x", 100<<10) + leak("at the end"),
		"empty.txt":      "",
		"dump.gz":        "\x1f\x8b\x08\x00\x00\x00\x00\x00" + leak(""),
	}
	dir := t.TempDir()
	for name, body := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	scr := scrub.New([]string{secretValue})
	tests := []struct {
		name       string
		scr        *scrub.Scrubber
		wantStored []string
		wantLog    string
	}{
		{name: "with secrets", scr: scr,
			wantStored: []string{"big.log", "empty.txt", "junit.xml", "plot.svg", "tap/out.tap", "vm/journal.txt"},
			wantLog:    "artifact dump.gz skipped: this task had secrets"},
		{name: "without secrets", scr: scrub.New(nil),
			wantStored: []string{"big.log", "dump.gz", "empty.txt", "junit.xml", "plot.svg", "tap/out.tap", "vm/journal.txt"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, err := store.NewDir(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			b := &Bot{cfg: Config{Store: st}}
			var log bytes.Buffer
			if err := b.uploadArtifacts(context.Background(), "o/r/s/c/1/", dir, tt.scr, &log); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(log.String(), tt.wantLog) {
				t.Errorf("log %q, want %q", log.String(), tt.wantLog)
			}
			infos, err := st.List(context.Background(), "o/r/s/c/1/artifacts/")
			if err != nil {
				t.Fatal(err)
			}
			types := map[string]string{}
			for _, info := range infos {
				types[strings.TrimPrefix(info.Key, "o/r/s/c/1/artifacts/")] = info.ContentType
			}
			// Text of no known extension is plain text, never rendered.
			if got := types["tap/out.tap"]; got != "text/plain; charset=utf-8" {
				t.Errorf("out.tap stored as %q, want text/plain", got)
			}
			if got, ok := types["dump.gz"]; ok && got == "text/plain; charset=utf-8" {
				t.Errorf("dump.gz stored as %q", got)
			}
			var stored []string
			for _, info := range infos {
				name := strings.TrimPrefix(info.Key, "o/r/s/c/1/artifacts/")
				stored = append(stored, name)
				got, err := readKey(st, info.Key)
				if err != nil {
					t.Fatal(err)
				}
				if tt.scr.Empty() {
					if got != files[name] {
						t.Errorf("%s changed without secrets: %q", name, got)
					}
					continue
				}
				for _, form := range scr.Forms() {
					if strings.Contains(got, form) {
						t.Errorf("%s holds the secret as %q:\n%s", name, form, got)
					}
				}
				if want := scr.String(files[name]); got != want {
					t.Errorf("%s stored as %q, want %q", name, got, want)
				}
			}
			if strings.Join(stored, " ") != strings.Join(tt.wantStored, " ") {
				t.Errorf("stored %v, want %v", stored, tt.wantStored)
			}
		})
	}
}
