package config

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/turtles-ci/turtles"
)

const file = ".turtles.yaml"

func TestParse(t *testing.T) {
	tests := []struct {
		name string
		data string
		want *Config
		// wantErr is the whole error text when want is nil.
		wantErr string
	}{
		{
			name: "defaults applied",
			data: "contexts:\n  - name: unit\n    command: go test ./...\n",
			want: &Config{Contexts: []Context{
				{Name: "unit", Command: "go test ./...", Timeout: Duration(time.Hour), Pool: turtles.DefaultPool},
			}},
		},
		{
			name: "everything set",
			data: `# tests for every push
contexts:
  - name: unit
    command: go test ./...
  - name: freebsd/race
    command: |
      go test -race ./...
      go vet ./...
    timeout: 90m
    pool: freebsd-14
    priority: 9
`,
			want: &Config{Contexts: []Context{
				{Name: "unit", Command: "go test ./...", Timeout: Duration(time.Hour), Pool: turtles.DefaultPool},
				{Name: "freebsd/race", Command: "go test -race ./...\ngo vet ./...\n", Timeout: Duration(90 * time.Minute), Pool: "freebsd-14", Priority: 9},
			}},
		},
		{
			name: "vm contexts",
			data: `contexts:
  - name: kernel
    command: make check
    image: debian-12
    cpus: 4
    memory: 2G
  - name: browser
    command: npm test
    image: debian-12
    mode: host
    memory: 1536
    forward: [9090, 80]
    retries: 2
`,
			want: &Config{Contexts: []Context{
				{Name: "kernel", Command: "make check", Timeout: Duration(time.Hour), Pool: turtles.DefaultPool, Image: "debian-12", Mode: turtles.ModeGuest, CPUs: 4, Memory: 2048},
				{Name: "browser", Command: "npm test", Timeout: Duration(time.Hour), Pool: turtles.DefaultPool, Image: "debian-12", Mode: turtles.ModeHost, Memory: 1536, Forward: []int{9090, 80}, Retries: 2},
			}},
		},
		{
			name: "pinned images",
			data: `images:
  debian-12: debian-12-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa
contexts:
  - name: kernel
    command: make check
    image: debian-12
  - name: inline
    command: make check
    image: fedora-41-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa
  - name: unpinned
    command: make check
    image: local
`,
			want: &Config{
				Images: map[string]string{"debian-12": "debian-12-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"},
				Contexts: []Context{
					{Name: "kernel", Command: "make check", Timeout: Duration(time.Hour), Pool: turtles.DefaultPool, Image: "debian-12-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", Mode: turtles.ModeGuest},
					{Name: "inline", Command: "make check", Timeout: Duration(time.Hour), Pool: turtles.DefaultPool, Image: "fedora-41-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", Mode: turtles.ModeGuest},
					{Name: "unpinned", Command: "make check", Timeout: Duration(time.Hour), Pool: turtles.DefaultPool, Image: "local", Mode: turtles.ModeGuest},
				},
			},
		},
		{
			name:    "pin not a hash",
			data:    "images:\n  debian-12: debian-12\n  ok: ok-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\ncontexts:\n  - name: unit\n    command: make\n",
			wantErr: ".turtles.yaml:2: images: debian-12: \"debian-12\" is not a pinned image: want NAME-SHA256 (64 lowercase hex digits), as `turtles image push` prints",
		},
		{
			name:    "pin upper-case hash",
			data:    "contexts:\n  - name: unit\n    command: make\nimages:\n  d: d-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n",
			wantErr: ".turtles.yaml:5: images: d: \"d-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\" is not a pinned image: want NAME-SHA256 (64 lowercase hex digits), as `turtles image push` prints",
		},
		{
			name:    "pin bad name",
			data:    "images:\n  ../x: x-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\ncontexts:\n  - name: unit\n    command: make\n",
			wantErr: ".turtles.yaml:2: images: bad image name \"../x\": use letters, digits and ._- (at most 100)",
		},
		{
			name:    "pin not a map",
			data:    "images: [debian-12]\ncontexts:\n  - name: unit\n    command: make\n",
			wantErr: ".turtles.yaml:1: cannot unmarshal !!seq into map[string]string",
		},
		{
			name:    "bad vm mode",
			data:    "contexts:\n  - name: unit\n    command: make\n    image: debian-12\n    mode: chroot\n",
			wantErr: `.turtles.yaml:2: context 1: "unit": mode "chroot": want guest or host`,
		},
		{
			name:    "mode without image",
			data:    "contexts:\n  - name: unit\n    command: make\n    mode: guest\n",
			wantErr: `.turtles.yaml:2: context 1: "unit": mode, cpus, memory, forward and warm need an image`,
		},
		{
			name:    "bad forward",
			data:    "contexts:\n  - name: unit\n    command: make\n    image: debian-12\n    forward: [70000]\n",
			wantErr: `.turtles.yaml:2: context 1: "unit": forward: port 70000 out of range 1..65535`,
		},
		{
			name:    "image path refused",
			data:    "contexts:\n  - name: unit\n    command: make\n    image: /etc/passwd\n",
			wantErr: `.turtles.yaml:2: context 1: "unit": bad image name "/etc/passwd": use the name of an image the bots have, such as debian-12`,
		},
		{
			name:    "bad memory",
			data:    "contexts:\n  - name: unit\n    command: make\n    image: debian-12\n    memory: lots\n",
			wantErr: `.turtles.yaml:5: bad memory size "lots": want MiB or a unit, such as 2048, 512M or 2G`,
		},
		{
			name:    "memory too small",
			data:    "contexts:\n  - name: unit\n    command: make\n    image: debian-12\n    memory: 64M\n",
			wantErr: `.turtles.yaml:2: context 1: "unit": memory 64M out of range 128M..262144M`,
		},
		{
			name:    "too many cpus",
			data:    "contexts:\n  - name: unit\n    command: make\n    image: debian-12\n    cpus: 65\n",
			wantErr: `.turtles.yaml:2: context 1: "unit": cpus 65 out of range 1..64`,
		},
		{
			name: "null timeout is the default",
			data: "contexts:\n  - name: unit\n    command: make\n    timeout: ~\n",
			want: &Config{Contexts: []Context{
				{Name: "unit", Command: "make", Timeout: Duration(time.Hour), Pool: turtles.DefaultPool},
			}},
		},
		{
			name:    "unknown key names the line",
			data:    "contexts:\n  - name: unit\n    comand: go test\n",
			wantErr: `.turtles.yaml:3: unknown key "comand"`,
		},
		{
			name:    "unknown top-level key",
			data:    "contexts:\n  - name: unit\n    command: go test\nenv:\n  CI: 1\n",
			wantErr: `.turtles.yaml:4: unknown key "env"`,
		},
		{
			name:    "syntax error names the line",
			data:    "contexts:\n  - name: unit\n    command: go test: ./...\n",
			wantErr: ".turtles.yaml:3: mapping values are not allowed in this context",
		},
		{
			name:    "tab indentation",
			data:    "contexts:\n\t- name: unit\n",
			wantErr: ".turtles.yaml:2: found character that cannot start any token",
		},
		{
			name:    "bad duration",
			data:    "contexts:\n  - name: unit\n    command: go test\n    timeout: 5 minutes\n",
			wantErr: `.turtles.yaml:4: bad duration "5 minutes": want a number with a unit, such as 90s, 30m or 2h`,
		},
		{
			name:    "duration that is not a scalar",
			data:    "contexts:\n  - name: unit\n    command: go test\n    timeout: [1h]\n",
			wantErr: `.turtles.yaml:4: bad duration "": want a number with a unit, such as 90s, 30m or 2h`,
		},
		{
			name:    "timeout too long",
			data:    "contexts:\n  - name: unit\n    command: go test\n    timeout: 48h\n",
			wantErr: `.turtles.yaml:2: context 1: "unit": timeout 48h0m0s out of range 0..24h0m0s`,
		},
		{
			name:    "duplicate context",
			data:    "contexts:\n  - name: unit\n    command: a\n  - name: unit\n    command: b\n",
			wantErr: `.turtles.yaml:4: context 2: duplicate context "unit" (first at line 2)`,
		},
		{
			// yaml.v3 drops null entries from the list; the lines of the
			// others must still be theirs.
			name:    "duplicate after an empty entry",
			data:    "contexts:\n  - ~\n  - name: unit\n    command: a\n  - name: unit\n    command: b\n",
			wantErr: `.turtles.yaml:5: context 2: duplicate context "unit" (first at line 3)`,
		},
		{
			name:    "duplicate through an alias",
			data:    "contexts:\n  - &u {name: unit, command: a}\n  - *u\n",
			wantErr: `.turtles.yaml:3: context 2: duplicate context "unit" (first at line 2)`,
		},
		{
			name:    "reserved name",
			data:    "contexts:\n  - name: turtles\n    command: go test\n",
			wantErr: `.turtles.yaml:2: context 1: name "turtles" is reserved for turtles itself`,
		},
		{
			name:    "bad name",
			data:    "contexts:\n  - name: ../etc\n    command: go test\n",
			wantErr: `.turtles.yaml:2: context 1: bad name "../etc": use letters, digits and ._/+- (at most 100)`,
		},
		{
			name:    "missing name",
			data:    "contexts:\n  - command: go test\n",
			wantErr: ".turtles.yaml:2: context 1: missing name",
		},
		{
			name:    "empty file",
			data:    "",
			wantErr: ".turtles.yaml: file is empty: want a list of contexts",
		},
		{
			name:    "only comments",
			data:    "# nothing yet\n",
			wantErr: ".turtles.yaml: file is empty: want a list of contexts",
		},
		{
			name:    "no contexts",
			data:    "contexts: []\n",
			wantErr: `.turtles.yaml: no contexts: want a list under "contexts:"`,
		},
		{
			name:    "missing command",
			data:    "contexts:\n  - name: unit\n    command: go test\n  - name: lint\n",
			wantErr: `.turtles.yaml:4: context 2: "lint" has no command`,
		},
		{
			name:    "blank command",
			data:    "contexts:\n  - name: lint\n    command: \"  \"\n",
			wantErr: `.turtles.yaml:2: context 1: "lint" has no command`,
		},
		{
			name:    "bad pool",
			data:    "contexts:\n  - name: unit\n    command: go test\n    pool: Big Iron\n",
			wantErr: `.turtles.yaml:2: context 1: "unit": bad pool name "Big Iron"`,
		},
		{
			name:    "priority out of range",
			data:    "contexts:\n  - name: unit\n    command: go test\n    priority: 10\n",
			wantErr: `.turtles.yaml:2: context 1: "unit": priority 10 out of range 0..9`,
		},
		{
			name:    "bad quarantine glob",
			data:    "quarantine: [\"Test[\"]\ncontexts:\n  - name: unit\n    command: go test\n",
			wantErr: `.turtles.yaml: quarantine: bad test glob "Test[": want a non-empty glob of at most 200 bytes (path.Match syntax)`,
		},
		{
			name:    "retries out of range",
			data:    "contexts:\n  - name: unit\n    command: go test\n    retries: 6\n",
			wantErr: `.turtles.yaml:2: context 1: "unit": retries 6 out of range 0..5`,
		},
		{
			name:    "negative retries",
			data:    "contexts:\n  - name: unit\n    command: go test\n    retries: -1\n",
			wantErr: `.turtles.yaml:2: context 1: "unit": retries -1 out of range 0..5`,
		},
		{
			name:    "wrong type",
			data:    "contexts:\n  - name: unit\n    command: go test\n    priority: high\n",
			wantErr: ".turtles.yaml:4: cannot unmarshal !!str `high` into int",
		},
		{
			name:    "two documents",
			data:    "contexts:\n  - name: unit\n    command: go test\n---\ncontexts: []\n",
			wantErr: ".turtles.yaml:4: more than one YAML document",
		},
		{
			name:    "repeated key",
			data:    "contexts:\n  - name: unit\n    command: a\n    command: b\n",
			wantErr: `.turtles.yaml:4: mapping key "command" already defined at line 3`,
		},
		{
			name:    "too large",
			data:    "#" + strings.Repeat(" ", MaxSize),
			wantErr: ".turtles.yaml: file is 1048577 bytes, larger than 1048576",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse(file, []byte(tt.data))
			if tt.want != nil {
				if err != nil {
					t.Fatalf("Parse: %v, want no error", err)
				}
				if diff := cmp.Diff(tt.want, got, cmpopts.IgnoreUnexported(Context{})); diff != "" {
					t.Errorf("Parse (-want +got):\n%s", diff)
				}
				return
			}
			if err == nil {
				t.Fatalf("Parse = %+v, want error %q", got, tt.wantErr)
			}
			if diff := cmp.Diff(tt.wantErr, err.Error()); diff != "" {
				t.Errorf("Parse error (-want +got):\n%s", diff)
			}
			if _, ok := errors.AsType[*Error](err); !ok {
				t.Errorf("Parse error is %T, want *config.Error", err)
			}
		})
	}
}

func TestFindAndTask(t *testing.T) {
	c, err := Parse(file, []byte("contexts:\n  - name: unit\n    command: go test\n    timeout: 10m\n    pool: linux\n    priority: 3\n"))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := c.Find("lint"); ok {
		t.Errorf("Find(lint) found a context that is not there")
	}
	x, ok := c.Find("unit")
	if !ok {
		t.Fatalf("Find(unit) found nothing")
	}
	plan := turtles.Task{
		Version: turtles.TaskVersion, Kind: turtles.KindPlan, Context: turtles.PlanContext,
		Repo: turtles.Repo{Name: "o/r", CloneURL: "https://github.com/o/r.git"},
		SHA:  "3f786850e387550fdab836ed7e6dc881de23001b", Ref: "refs/pull/7/head", PR: 7,
		Pool: turtles.DefaultPool, Attempt: 3, Trusted: true, Secrets: []string{"TOKEN"},
		Created: time.Date(2026, 11, 23, 9, 30, 0, 0, time.UTC),
	}
	want := plan
	want.Kind = turtles.KindTest
	want.Context = "unit"
	want.Command = "go test"
	want.Timeout = turtles.Duration(10 * time.Minute)
	want.Pool = "linux"
	want.Priority = 3
	want.Attempt = 1
	got := x.Task(plan)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Task (-want +got):\n%s", diff)
	}
	if err := got.Validate(); err != nil {
		t.Errorf("Task is invalid: %v", err)
	}
}

func TestTaskCarriesVM(t *testing.T) {
	c, err := Parse(file, []byte("contexts:\n  - name: k\n    command: make\n    image: debian-12\n    cpus: 2\n    memory: 1G\n"))
	if err != nil {
		t.Fatal(err)
	}
	plan := turtles.Task{
		Version: turtles.TaskVersion, Kind: turtles.KindPlan, Context: turtles.PlanContext,
		Repo: turtles.Repo{Name: "o/r", CloneURL: "https://github.com/o/r.git"},
		SHA:  "3f786850e387550fdab836ed7e6dc881de23001b", Pool: turtles.DefaultPool, Attempt: 1,
	}
	got := c.Contexts[0].Task(plan)
	want := struct {
		Image, Mode    string
		CPUs, MemoryMB int
	}{"debian-12", turtles.ModeGuest, 2, 1024}
	if diff := cmp.Diff(want, struct {
		Image, Mode    string
		CPUs, MemoryMB int
	}{got.Image, got.Mode, got.CPUs, got.MemoryMB}); diff != "" {
		t.Errorf("VM fields of the task (-want +got):\n%s", diff)
	}
	if err := got.Validate(); err != nil {
		t.Errorf("Task is invalid: %v", err)
	}
}

// TestTaskWarm: VMs start warm unless a context says warm: false.
func TestTaskWarm(t *testing.T) {
	c, err := Parse(file, []byte("contexts:\n  - name: warm\n    command: make\n    image: debian-12\n"+
		"  - name: also\n    command: make\n    image: debian-12\n    warm: true\n"+
		"  - name: cold\n    command: make\n    image: debian-12\n    warm: false\n"))
	if err != nil {
		t.Fatal(err)
	}
	plan := turtles.Task{Version: turtles.TaskVersion, Kind: turtles.KindPlan, Context: turtles.PlanContext,
		Repo: turtles.Repo{Name: "o/r", CloneURL: "https://github.com/o/r.git"},
		SHA:  "3f786850e387550fdab836ed7e6dc881de23001b", Pool: turtles.DefaultPool, Attempt: 1}
	for i, want := range []bool{false, false, true} {
		if got := c.Contexts[i].Task(plan).Cold; got != want {
			t.Errorf("%s: Cold %v, want %v", c.Contexts[i].Name, got, want)
		}
	}
}

// FuzzParse checks that no file panics the parser, that every error is an
// *Error for people to read, and that whatever parses is runnable: each
// context becomes a valid test task.
func FuzzParse(f *testing.F) {
	f.Add([]byte("contexts:\n  - name: unit\n    command: go test ./...\n"))
	f.Add([]byte("contexts:\n  - name: unit\n    command: x\n    auto: false\n    secrets: [A_B]\n    run_if_changed: [\"**/*.go\"]\n    branches:\n      pull_request: [main, \"rhel-*\"]\n      push: []\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(file, data)
		if err != nil {
			e, ok := errors.AsType[*Error](err)
			if !ok {
				t.Fatalf("Parse error is %T (%v), want *config.Error", err, err)
			}
			if e.File != file || e.Line < 0 || e.Msg == "" {
				t.Errorf("Parse error %#v: want file %q, a line >= 0 and a message", e, file)
			}
			if c != nil {
				t.Errorf("Parse returned a config with error %v", err)
			}
			return
		}
		if len(c.Contexts) == 0 {
			t.Fatalf("Parse returned a config with no contexts")
		}
		plan := turtles.Task{
			Version: turtles.TaskVersion, Kind: turtles.KindPlan, Context: turtles.PlanContext,
			Repo: turtles.Repo{Name: "o/r", CloneURL: "https://github.com/o/r.git"},
			SHA:  "3f786850e387550fdab836ed7e6dc881de23001b", Pool: turtles.DefaultPool, Attempt: 1,
		}
		names := map[string]bool{}
		for i, x := range c.Contexts {
			if x.Name == "" || strings.TrimSpace(x.Command) == "" {
				t.Errorf("context %d = %+v: want a name and a command", i+1, x)
			}
			if names[x.Name] {
				t.Errorf("context %d: name %q appears twice", i+1, x.Name)
			}
			names[x.Name] = true
			if x.Timeout <= 0 || time.Duration(x.Timeout) > MaxTimeout {
				t.Errorf("context %d: timeout %s, want 0 < timeout <= %s", i+1, x.Timeout, MaxTimeout)
			}
			if err := x.Task(plan).Validate(); err != nil {
				t.Errorf("context %d = %+v makes an invalid task: %v", i+1, x, err)
			}
			// Matrix rules never panic, whatever the globs.
			x.Runs(Event{PullRequest: true, Branch: "main", Changed: []string{"a/b.go", "docs/x.md"}})
			x.Runs(Event{Branch: "release/1", Changed: []string{}})
		}
	})
}

// TestQuarantineReachesTasks: the quarantine list of .turtles.yaml goes
// with every context's task.
func TestQuarantineReachesTasks(t *testing.T) {
	cfg, err := Parse(".turtles.yaml", []byte("quarantine: [TestFlaky*, \"pkg/net: *\"]\ncontexts:\n  - name: unit\n    command: go test\n"))
	if err != nil {
		t.Fatal(err)
	}
	got := cfg.TaskOf(cfg.Contexts[0], turtles.Task{Attempt: 1}).Quarantine
	if diff := cmp.Diff([]string{"TestFlaky*", "pkg/net: *"}, got); diff != "" {
		t.Errorf("task quarantine (-want +got):\n%s", diff)
	}
}

// TestTaskHold: hold: needs an image and one of two values, and reaches
// the task.
func TestTaskHold(t *testing.T) {
	for _, tc := range []struct {
		name, yaml, want, wantErr string
	}{
		{name: "none", yaml: "    image: debian-12\n", want: ""},
		{name: "on failure", yaml: "    image: debian-12\n    hold: on-failure\n", want: turtles.HoldOnFailure},
		{name: "with secrets", yaml: "    image: debian-12\n    hold: on-failure-with-secrets\n", want: turtles.HoldWithSecrets},
		{name: "bad value", yaml: "    image: debian-12\n    hold: always\n", wantErr: `hold "always": want on-failure or on-failure-with-secrets`},
		{name: "no image", yaml: "    hold: on-failure\n", wantErr: "hold needs an image"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse(file, []byte("contexts:\n  - name: vm\n    command: make\n"+tc.yaml))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Parse: %v, want an error with %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := c.Contexts[0].Task(turtles.Task{Kind: turtles.KindPlan}).Hold; got != tc.want {
				t.Errorf("Hold %q, want %q", got, tc.want)
			}
		})
	}
}
