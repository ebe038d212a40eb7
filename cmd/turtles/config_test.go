package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestConfigCheck(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	os.WriteFile(good, []byte("contexts:\n  - name: unit\n    command: make check\n  - name: nightly\n    command: make slow\n    auto: false\n    secrets: [TOKEN]\n"), 0o644)
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("contexts:\n  - name: unit\n    command: make check\n    colour: blue\n"), 0o644)
	tests := []struct {
		name    string
		args    []string
		stdin   string
		wantOut []string
		wantErr string
	}{
		{name: "good", args: []string{good}, wantOut: []string{"good.yaml: 2 context(s), OK", "unit", "nightly", "on request only; secrets TOKEN"}},
		{name: "bad", args: []string{bad}, wantErr: bad + `:4: unknown key "colour"`},
		{name: "stdin", args: []string{"-"}, stdin: "contexts: []\n", wantErr: `<stdin>: no contexts`},
		{name: "missing", args: []string{filepath.Join(dir, "none.yaml")}, wantErr: "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd := rootCmd()
			var out bytes.Buffer
			cmd.SetOut(&out)
			cmd.SetErr(&out)
			cmd.SetIn(strings.NewReader(tt.stdin))
			cmd.SetArgs(append([]string{"config", "check"}, tt.args...))
			err := cmd.Execute()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range tt.wantOut {
				if !strings.Contains(out.String(), w) {
					t.Errorf("output lacks %q:\n%s", w, out.String())
				}
			}
		})
	}
}
