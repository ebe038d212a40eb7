package triage

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"path"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/turtles-ci/turtles/config"
)

// Limits on what a pattern file may hold, so that a pattern cannot make
// matching slow or a file cannot make loading slow.
const (
	MaxFileSize   = 1 << 20 // a pattern file, with its samples inline
	MaxSampleSize = 8 << 20 // a sample file
	MaxRegexLen   = 4096
	MaxRegexInsts = 10000 // instructions of the compiled regex program
	MaxGlobLen    = 8192
	// MaxLines is the most lines a match spans: a glob of more lines, or
	// a regex whose matches would span more, is not found.
	MaxLines = 50
	// MinLiteral is the shortest text every match of a pattern must
	// contain; matching looks for it first, which keeps it fast.
	MinLiteral = 3
)

// file is a pattern file as written.
type file struct {
	Issue    string   `yaml:"issue"`
	Title    string   `yaml:"title"`
	Scope    Scope    `yaml:"scope"`
	Match    match    `yaml:"match"`
	Files    []string `yaml:"files"`
	Action   Action   `yaml:"action"`
	Blocking bool     `yaml:"blocking"`
	Expires  string   `yaml:"expires"`
	Samples  []Sample `yaml:"samples"`
}

type match struct {
	Glob  string `yaml:"glob"`
	Regex string `yaml:"regex"`
}

// UnmarshalYAML reads a sample: a string (the text itself) or a mapping
// with text or file.
func (s *Sample) UnmarshalYAML(n *yaml.Node) error {
	s.Line = n.Line
	switch n.Kind {
	case yaml.ScalarNode:
		return n.Decode(&s.Text)
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if v.Kind != yaml.ScalarNode {
				return fmt.Errorf("line %d: sample %s must be a string", v.Line, k.Value)
			}
			switch k.Value {
			case "text":
				s.Text = v.Value
			case "file":
				s.File = v.Value
			default:
				return fmt.Errorf("line %d: unknown key %q in a sample (want text or file)", k.Line, k.Value)
			}
		}
		if (s.Text == "") == (s.File == "") {
			return fmt.Errorf("line %d: a sample has either text or file", n.Line)
		}
		return nil
	}
	return fmt.Errorf("line %d: a sample is a string or a mapping with text or file", n.Line)
}

// Parse parses the pattern file name. Errors are *config.Error naming
// name and, when known, the line. Samples given as files are not read:
// Load reads them.
func Parse(name string, data []byte) (*Pattern, error) {
	fail := func(line int, format string, args ...any) error {
		return &config.Error{File: name, Line: line, Msg: fmt.Sprintf(format, args...)}
	}
	if len(data) > MaxFileSize {
		return nil, fail(0, "file is larger than %d bytes", MaxFileSize)
	}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, config.DecodeStrict(name, data, &struct{}{}) // the same error, with its line
	}
	var f file
	if err := config.DecodeStrict(name, data, &f); err != nil {
		return nil, err
	}
	line := func(key string) int { return keyLine(&root, key) }
	p := &Pattern{Name: name, Issue: f.Issue, Title: f.Title, Scope: f.Scope, Files: f.Files,
		Action: f.Action, Blocking: f.Blocking, Samples: f.Samples}
	if p.Issue == "" {
		return nil, fail(line("issue"), "issue is required: the URL of the issue this pattern recognizes")
	}
	if u, err := url.Parse(p.Issue); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fail(line("issue"), "issue %q is not an http(s) URL", p.Issue)
	}
	switch p.Action {
	case "":
		p.Action = KnownIssue
	case KnownIssue, Retry, Skip:
	default:
		return nil, fail(line("action"), "action %q: want known-issue, retry or skip", p.Action)
	}
	if len(p.Files) == 0 {
		p.Files = []string{"log"}
	}
	for key, globs := range map[string][]string{"files": p.Files, "scope": slices.Concat(p.Scope.Contexts, p.Scope.Images, p.Scope.Tests)} {
		for _, g := range globs {
			if _, err := path.Match(g, ""); err != nil || g == "" {
				return nil, fail(line(key), "bad glob %q in %s", g, key)
			}
		}
	}
	if f.Expires != "" {
		t, err := time.Parse(time.DateOnly, f.Expires)
		if err != nil {
			return nil, fail(line("expires"), "expires %q: want a date such as 2025-12-31", f.Expires)
		}
		p.Expires = t
	}
	var err error
	switch {
	case (f.Match.Glob == "") == (f.Match.Regex == ""):
		return nil, fail(line("match"), "match needs exactly one of glob or regex")
	case f.Match.Glob != "":
		p.Source, p.IsGlob = f.Match.Glob, true
		err = p.compileGlob()
	default:
		p.Source = f.Match.Regex
		err = p.compileRegex()
	}
	if err != nil {
		return nil, fail(line("match"), "%v", err)
	}
	for _, s := range p.Samples {
		if s.File != "" && (!fs.ValidPath(path.Join(path.Dir(name), s.File)) || strings.HasPrefix(s.File, "/")) {
			return nil, fail(s.Line, "sample file %q must be a path relative to the pattern file, inside its folder tree", s.File)
		}
	}
	return p, nil
}

// keyLine returns the line of a top-level key, or 0.
func keyLine(root *yaml.Node, key string) int {
	if root.Kind != yaml.DocumentNode || len(root.Content) == 0 {
		return 0
	}
	m := root.Content[0]
	if m.Kind != yaml.MappingNode {
		return m.Line
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i].Line
		}
	}
	return m.Line
}

// Set is a set of patterns, in the order they were loaded.
type Set struct {
	Patterns []*Pattern
}

// Add appends the patterns of o, such as a repository's after the
// server's.
func (s *Set) Add(o *Set) {
	if o != nil {
		s.Patterns = append(s.Patterns, o.Patterns...)
	}
}

// Load parses every *.yaml and *.yml file in dir of fsys (not in its
// subfolders, which may hold sample files) and reads their sample files.
// A file that does not parse is an error in errs and is left out; the
// others load. Names are dir-relative paths as in fsys.
func Load(fsys fs.FS, dir string) (*Set, []error) {
	set := &Set{}
	entries, err := fs.ReadDir(fsys, dir)
	if errors.Is(err, fs.ErrNotExist) {
		return set, nil
	}
	if err != nil {
		return set, []error{fmt.Errorf("read known issues in %s: %w", dir, err)}
	}
	var errs []error
	for _, e := range entries {
		ext := path.Ext(e.Name())
		if e.IsDir() || (ext != ".yaml" && ext != ".yml") {
			continue
		}
		name := path.Join(dir, e.Name())
		data, err := readLimited(fsys, name, MaxFileSize)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		p, err := Parse(name, data)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if err := p.readSamples(fsys); err != nil {
			errs = append(errs, err)
			continue
		}
		set.Patterns = append(set.Patterns, p)
	}
	return set, errs
}

func (p *Pattern) readSamples(fsys fs.FS) error {
	for i, s := range p.Samples {
		if s.File == "" {
			continue
		}
		data, err := readLimited(fsys, path.Join(path.Dir(p.Name), s.File), MaxSampleSize)
		if err != nil {
			return &config.Error{File: p.Name, Line: s.Line, Msg: err.Error()}
		}
		p.Samples[i].Text = string(data)
	}
	return nil
}

func readLimited(fsys fs.FS, name string, limit int) ([]byte, error) {
	f, err := fsys.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var b bytes.Buffer
	if _, err := b.ReadFrom(io.LimitReader(f, int64(limit)+1)); err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	if b.Len() > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes", name, limit)
	}
	return b.Bytes(), nil
}
