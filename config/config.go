// Package config parses a repository's .turtles.yaml: the contexts to run
// for each commit. Decoding is strict: an unknown key, a wrong type or a
// syntax error is an error that names the file, the line and the problem,
// because it ends up in a commit status a person reads.
//
// Anyone may import it; it does no I/O.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"path"
	"regexp"
	"sort"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/turtles-ci/turtles"
)

// FileName is where a repository keeps its turtles configuration.
const FileName = ".turtles.yaml"

// MaxSize is the largest configuration file accepted.
const MaxSize = 1 << 20

// Config is a parsed .turtles.yaml.
type Config struct {
	// Images pins image names to content-addressed images: a context's
	// "image: debian-12" then means the image "debian-12-SHA256", which a
	// bot fetches if it lacks it (docs/images.md). Validation replaces
	// each context's Image by its pin.
	Images map[string]string `yaml:"images"`

	// Quarantine lists tests (globs over per-test result names, path.Match
	// syntax) whose failures do not block: an attempt whose failed tests
	// are all quarantined passes as a flake, still recorded. Trusted work
	// only: a change cannot quarantine its own failures.
	Quarantine []string `yaml:"quarantine"`

	Contexts []Context `yaml:"contexts"`
}

// Quarantine limits.
const (
	MaxQuarantine     = 1000
	maxQuarantineGlob = 200
)

// TaskOf is x.Task(plan) with what the whole configuration adds to each
// context's task (the quarantine list).
func (c *Config) TaskOf(x Context, plan turtles.Task) turtles.Task {
	t := x.Task(plan)
	if len(c.Quarantine) > 0 {
		t.Quarantine = append([]string(nil), c.Quarantine...)
	}
	return t
}

// Context is one named job: a command run against a checkout.
type Context struct {
	Name    string `yaml:"name"`
	Command string `yaml:"command"`
	// Timeout bounds the command; DefaultTimeout when zero.
	Timeout Duration `yaml:"timeout"`
	// Pool is the bot pool to run on; turtles.DefaultPool when empty.
	Pool string `yaml:"pool"`
	// Priority 0..9, higher first.
	Priority int `yaml:"priority"`
	// Image names a bootable OS image on the bot (see docs/vms.md); when
	// set, the command runs with a fresh VM of it, as Mode says.
	Image string `yaml:"image"`
	// Mode is turtles.ModeGuest (the default with an image: the checkout
	// is copied into the VM and the command runs there) or
	// turtles.ModeHost (the command runs on the bot, the VM beside it).
	Mode string `yaml:"mode"`
	// CPUs and Memory size the VM; the bot's defaults when zero.
	CPUs   int `yaml:"cpus"`
	Memory MiB `yaml:"memory"`
	// Forward lists guest TCP ports made reachable on the bot's loopback
	// (host mode: TURTLES_VM_PORT_<port> says where).
	Forward []int `yaml:"forward"`
	// Warm: false boots the context's VM cold instead of restoring it from
	// the image's saved state (the default; docs/vms.md).
	Warm *bool `yaml:"warm"`
	// Hold keeps the VM of a failed attempt for `turtles debug`: HoldOnFailure,
	// or HoldWithSecrets for a context with secrets (docs/vms.md).
	Hold string `yaml:"hold"`
	// Machines, instead of Image, boots several VMs on one private
	// network where they reach each other by name (docs/machines.md); the
	// command runs in the first (mode guest) or beside them (mode host).
	Machines []Machine `yaml:"machines"`
	// Cluster, instead of Image and Machines, boots a cluster made by a
	// provider (docs/clusters.md): its nodes are machines: of the
	// provider's image.
	Cluster *Cluster `yaml:"cluster"`
	// Retries retries a failed test attempt up to this many times on the
	// same commit, to tell a flake from a regression (turtles.Task.Retries).
	Retries int `yaml:"retries"`

	// Auto runs the context by itself (the default); false: only on
	// request, with /test CONTEXT.
	Auto *bool `yaml:"auto"`
	// RunIfChanged runs the context only when a changed path matches one
	// of its globs; SkipIfOnlyChanged skips it when every changed path
	// matches one of its globs (see matrix.go).
	RunIfChanged      []string `yaml:"run_if_changed"`
	SkipIfOnlyChanged []string `yaml:"skip_if_only_changed"`
	// Branches limits which pull requests and pushes run the context.
	Branches Branches `yaml:"branches"`
	// Secrets are names of secrets the bot injects at run time; never
	// given to untrusted work (see Restrict).
	Secrets []string `yaml:"secrets"`

	line int
}

// Machine is one of a context's machines.
type Machine struct {
	// Name is its host name on the network; node01, node02.. when empty.
	Name  string `yaml:"name"`
	Image string `yaml:"image"`
	// CPUs and Memory size it; the bot's defaults when zero.
	CPUs    int   `yaml:"cpus"`
	Memory  MiB   `yaml:"memory"`
	Forward []int `yaml:"forward"`
}

// Cluster is a context's cluster: Nodes machines that Provider makes a
// cluster of (kubernetes: one control plane, the rest workers).
type Cluster struct {
	Provider string `yaml:"provider"`
	Nodes    int    `yaml:"nodes"`
	// CPUs and Memory size every node; the provider's or the bot's
	// defaults when zero.
	CPUs   int `yaml:"cpus"`
	Memory MiB `yaml:"memory"`
}

// ClusterImage is the image a cluster's nodes are made from: a provider
// replaces it with its own, made from it.
const ClusterImage = "debian-12"

// DefaultTimeout bounds a context that sets no timeout.
const DefaultTimeout = time.Hour

// MaxTimeout is the longest timeout a context may ask for.
const MaxTimeout = 24 * time.Hour

// Error is a configuration problem at a place in a file.
type Error struct {
	File string
	Line int // 0 when unknown
	Msg  string
}

func (e *Error) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	}
	return fmt.Sprintf("%s: %s", e.File, e.Msg)
}

var (
	contextNameRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._/+-]{0,99}$`)
	poolRe        = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)
	imageNameRe   = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$`)
	pinnedRe      = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,34}-[0-9a-f]{64}$`)
	yamlLineRe    = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)
	unknownKeyRe  = regexp.MustCompile(`^field (\S+) not found in type \S+$`)
)

// Parse decodes and validates data read from file (the name is used in
// errors only). Errors are *Error.
func Parse(file string, data []byte) (*Config, error) {
	if len(data) > MaxSize {
		return nil, &Error{File: file, Msg: fmt.Sprintf("file is %d bytes, larger than %d", len(data), MaxSize)}
	}
	var root yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&root); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, &Error{File: file, Msg: "file is empty: want a list of contexts"}
		}
		return nil, yamlError(file, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return nil, &Error{File: file, Line: extra.Line, Msg: "more than one YAML document"}
	}
	var c Config
	if err := DecodeStrict(file, data, &c); err != nil {
		return nil, err
	}
	imageLines := recordLines(&root, &c)
	if err := c.validate(file, imageLines); err != nil {
		return nil, err
	}
	return &c, nil
}

// DecodeStrict decodes YAML data into v, refusing unknown keys. An empty
// document leaves v as it is. Errors are *Error naming file and line, so
// every YAML file turtles reads reports problems the same way.
func DecodeStrict(file string, data []byte, v any) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil && !errors.Is(err, io.EOF) {
		return yamlError(file, err)
	}
	return nil
}

// yamlError turns yaml.v3's "yaml: line 3: ..." messages, possibly several
// joined in a TypeError, into an *Error for the first problem.
func yamlError(file string, err error) error {
	var te *yaml.TypeError
	msg := err.Error()
	if errors.As(err, &te) && len(te.Errors) > 0 {
		msg = te.Errors[0]
	}
	msg = strings.TrimPrefix(msg, "yaml: ")
	if m := yamlLineRe.FindStringSubmatch(msg); m != nil {
		var line int
		fmt.Sscan(m[1], &line)
		msg = m[2]
		if k := unknownKeyRe.FindStringSubmatch(msg); k != nil {
			msg = fmt.Sprintf("unknown key %q", k[1])
		}
		return &Error{File: file, Line: line, Msg: msg}
	}
	return &Error{File: file, Msg: msg}
}

// recordLines remembers where each context starts, for validation errors,
// and returns the lines of the image pins.
func recordLines(root *yaml.Node, c *Config) (imageLines map[string]int) {
	imageLines = map[string]int{}
	if root.Kind != yaml.DocumentNode || len(root.Content) == 0 {
		return
	}
	m := root.Content[0]
	if m.Kind != yaml.MappingNode {
		return
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == "images" && m.Content[i+1].Kind == yaml.MappingNode {
			for j := 0; j+1 < len(m.Content[i+1].Content); j += 2 {
				imageLines[m.Content[i+1].Content[j].Value] = m.Content[i+1].Content[j].Line
			}
		}
		if m.Content[i].Value != "contexts" || m.Content[i+1].Kind != yaml.SequenceNode {
			continue
		}
		// The decoder drops null entries ("- ~") from the list, so they
		// must not take a context's line.
		j := 0
		for _, n := range m.Content[i+1].Content {
			if n.ShortTag() == "!!null" {
				continue
			}
			if j < len(c.Contexts) {
				c.Contexts[j].line = n.Line
			}
			j++
		}
	}
	return imageLines
}

func (c *Config) validate(file string, imageLines map[string]int) error {
	if len(c.Contexts) == 0 {
		return &Error{File: file, Msg: "no contexts: want a list under \"contexts:\""}
	}
	if err := c.validateImages(file, imageLines); err != nil {
		return err
	}
	if len(c.Quarantine) > MaxQuarantine {
		return &Error{File: file, Msg: fmt.Sprintf("quarantine: %d tests, at most %d", len(c.Quarantine), MaxQuarantine)}
	}
	for _, g := range c.Quarantine {
		if _, err := path.Match(g, ""); err != nil || g == "" || len(g) > maxQuarantineGlob {
			return &Error{File: file, Msg: fmt.Sprintf("quarantine: bad test glob %q: want a non-empty glob of at most %d bytes (path.Match syntax)", g, maxQuarantineGlob)}
		}
	}
	seen := map[string]int{}
	for i := range c.Contexts {
		x := &c.Contexts[i]
		bad := func(format string, args ...any) error {
			return &Error{File: file, Line: x.line, Msg: fmt.Sprintf("context %d: ", i+1) + fmt.Sprintf(format, args...)}
		}
		switch {
		case x.Name == "":
			return bad("missing name")
		case !contextNameRe.MatchString(x.Name) || strings.Contains(x.Name, ".."):
			return bad("bad name %q: use letters, digits and ._/+- (at most 100)", x.Name)
		case x.Name == turtles.PlanContext:
			return bad("name %q is reserved for turtles itself", x.Name)
		case strings.TrimSpace(x.Command) == "":
			return bad("%q has no command", x.Name)
		case x.Timeout < 0 || time.Duration(x.Timeout) > MaxTimeout:
			return bad("%q: timeout %s out of range 0..%s", x.Name, x.Timeout, MaxTimeout)
		case x.Pool != "" && !poolRe.MatchString(x.Pool):
			return bad("%q: bad pool name %q", x.Name, x.Pool)
		case x.Priority < 0 || x.Priority > turtles.MaxPriority:
			return bad("%q: priority %d out of range 0..%d", x.Name, x.Priority, turtles.MaxPriority)
		case x.Retries < 0 || x.Retries > turtles.MaxRetries:
			return bad("%q: retries %d out of range 0..%d", x.Name, x.Retries, turtles.MaxRetries)
		case x.Image != "" && (!imageNameRe.MatchString(x.Image) || strings.Contains(x.Image, "..")):
			return bad("%q: bad image name %q: use the name of an image the bots have, such as debian-12", x.Name, x.Image)
		case x.Image != "" && len(x.Machines) > 0:
			return bad("%q: image and machines: give each machine its image instead", x.Name)
		case x.Cluster != nil && (x.Image != "" || len(x.Machines) > 0 || x.CPUs != 0 || x.Memory != 0 || len(x.Forward) != 0):
			return bad("%q: cluster: makes the machines; no image, machines, cpus, memory or forward beside it", x.Name)
		case len(x.Machines) > 0 && (x.CPUs != 0 || x.Memory != 0 || len(x.Forward) != 0):
			return bad("%q: cpus, memory and forward of machines go on each machine", x.Name)
		case x.Image == "" && len(x.Machines) == 0 && x.Cluster == nil && (x.Mode != "" || x.CPUs != 0 || x.Memory != 0 || len(x.Forward) != 0 || x.Warm != nil):
			return bad("%q: mode, cpus, memory, forward and warm need an image", x.Name)
		case x.Image == "" && x.Hold != "":
			return bad("%q: hold needs an image (the machines of machines: are not held)", x.Name)
		case x.Hold != "" && x.Hold != turtles.HoldOnFailure && x.Hold != turtles.HoldWithSecrets:
			return bad("%q: hold %q: want %s or %s", x.Name, x.Hold, turtles.HoldOnFailure, turtles.HoldWithSecrets)
		case len(x.Machines) > MaxMachines:
			return bad("%q: %d machines, at most %d", x.Name, len(x.Machines), MaxMachines)
		case len(x.Forward) > MaxForwards:
			return bad("%q: %d forwarded ports, at most %d", x.Name, len(x.Forward), MaxForwards)
		case x.Mode != "" && x.Mode != turtles.ModeGuest && x.Mode != turtles.ModeHost:
			return bad("%q: mode %q: want %s or %s", x.Name, x.Mode, turtles.ModeGuest, turtles.ModeHost)
		case x.CPUs < 0 || x.CPUs > MaxCPUs:
			return bad("%q: cpus %d out of range 1..%d", x.Name, x.CPUs, MaxCPUs)
		case x.Memory != 0 && (x.Memory < MinMemory || x.Memory > MaxMemory):
			return bad("%q: memory %dM out of range %dM..%dM", x.Name, x.Memory, MinMemory, MaxMemory)
		}
		if err := x.validateMatrix(); err != nil {
			return bad("%q: %v", x.Name, err)
		}
		if err := x.validateMachines(); err != nil {
			return bad("%q: %v", x.Name, err)
		}
		if err := x.Cluster.validate(); err != nil {
			return bad("%q: cluster: %v", x.Name, err)
		}
		for _, p := range x.Forward {
			if p < 1 || p > 65535 {
				return bad("%q: forward: port %d out of range 1..65535", x.Name, p)
			}
		}
		if first, ok := seen[x.Name]; ok {
			return bad("duplicate context %q (first at line %d)", x.Name, first)
		}
		seen[x.Name] = x.line
		if x.Timeout == 0 {
			x.Timeout = Duration(DefaultTimeout)
		}
		if x.Pool == "" {
			x.Pool = turtles.DefaultPool
		}
		if (x.Image != "" || len(x.Machines) > 0 || x.Cluster != nil) && x.Mode == "" {
			x.Mode = turtles.ModeGuest
		}
		if pin, ok := c.Images[x.Image]; ok {
			x.Image = pin
		}
		for j := range x.Machines {
			if pin, ok := c.Images[x.Machines[j].Image]; ok {
				x.Machines[j].Image = pin
			}
		}
	}
	return nil
}

// validateImages checks the pins: names as contexts use them, values
// NAME-SHA256 as `turtles image push` prints them.
func (c *Config) validateImages(file string, lines map[string]int) error {
	names := make([]string, 0, len(c.Images))
	for k := range c.Images {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		v := c.Images[k]
		bad := func(format string, args ...any) error {
			return &Error{File: file, Line: lines[k], Msg: "images: " + fmt.Sprintf(format, args...)}
		}
		switch {
		case !imageNameRe.MatchString(k) || strings.Contains(k, ".."):
			return bad("bad image name %q: use letters, digits and ._- (at most 100)", k)
		case !pinnedRe.MatchString(v) || strings.Contains(v, ".."):
			return bad("%s: %q is not a pinned image: want NAME-SHA256 (64 lowercase hex digits), as `turtles image push` prints", k, v)
		case pinnedRe.MatchString(k):
			return bad("%q is pinned already: pin a plain name, such as %s", k, k[:strings.LastIndexByte(k, '-')])
		}
	}
	return nil
}

// Find returns the context called name.
func (c *Config) Find(name string) (Context, bool) {
	for _, x := range c.Contexts {
		if x.Name == name {
			return x, true
		}
	}
	return Context{}, false
}

// Task returns the test task for context x at the commit that plan names;
// it inherits repository, commit, trust and origin from plan.
func (x Context) Task(plan turtles.Task) turtles.Task {
	t := plan
	t.Kind = turtles.KindTest
	t.Context = x.Name
	t.Command = x.Command
	t.Timeout = turtles.Duration(x.Timeout)
	t.Pool = x.Pool
	t.Priority = x.Priority
	t.Image = x.Image
	t.Mode = x.Mode
	t.CPUs = x.CPUs
	t.MemoryMB = int(x.Memory)
	t.Forward = x.Forward
	for _, m := range x.Machines {
		t.Machines = append(t.Machines, turtles.Machine{Name: m.Name, Image: m.Image, CPUs: m.CPUs, MemoryMB: int(m.Memory), Forward: m.Forward})
	}
	if c := x.Cluster; c != nil {
		t.Machines, t.Provider = c.Machines(), c.Provider
	}
	t.Retries = x.Retries
	t.Cold = x.Warm != nil && !*x.Warm
	t.Hold = x.Hold
	if len(x.Secrets) > 0 {
		t.Secrets = append([]string(nil), x.Secrets...)
	}
	t.Attempt = 1
	return t
}

// Limits on the VM a context may ask for.
const (
	MaxCPUs     = 64
	MaxForwards = 16
	// MaxMachines is the most machines a context may list; a bot's
	// operator may allow fewer (bot: VMConfig.MaxMachines).
	MaxMachines = 16
	MinMemory   = MiB(128)
	MaxMemory   = MiB(256 << 10)
)

// MiB is a memory size in mebibytes, written in YAML as a number of MiB
// or with a unit: 512, 512M, 2G.
type MiB int

// UnmarshalYAML implements yaml.Unmarshaler.
func (m *MiB) UnmarshalYAML(n *yaml.Node) error {
	v, mult := strings.TrimSpace(n.Value), 1
	switch {
	case strings.HasSuffix(v, "G"), strings.HasSuffix(v, "GiB"):
		v, mult = strings.TrimSuffix(strings.TrimSuffix(v, "iB"), "G"), 1024
	case strings.HasSuffix(v, "M"), strings.HasSuffix(v, "MiB"):
		v = strings.TrimSuffix(strings.TrimSuffix(v, "iB"), "M")
	}
	var x int
	_, err := fmt.Sscanf(v, "%d", &x)
	if n.Kind != yaml.ScalarNode || err != nil || fmt.Sprint(x) != v || x < 0 {
		return fmt.Errorf("line %d: bad memory size %q: want MiB or a unit, such as 2048, 512M or 2G", n.Line, n.Value)
	}
	*m = MiB(x * mult)
	return nil
}

// Duration is a YAML duration such as "90s" or "2h"; a bad one is an error
// with its line.
type Duration time.Duration

func (d Duration) String() string { return time.Duration(d).String() }

// UnmarshalYAML implements yaml.Unmarshaler.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if n.Kind != yaml.ScalarNode || err != nil {
		return fmt.Errorf("line %d: bad duration %q: want a number with a unit, such as 90s, 30m or 2h", n.Line, n.Value)
	}
	*d = Duration(v)
	return nil
}
