package main

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/spf13/pflag"
)

// option is one setting: a flag of the commands that take it, the
// environment variable TURTLES_NAME (envName) and, by its yaml tag on
// Settings, a key of the --config file.
type option struct {
	name  string // flag name
	usage string
	binding
}

func opt(name, usage string, b binding) option {
	return option{name: name, usage: usage, binding: b}
}

// binding ties an option to its field of Settings with its type: flags
// show the type in --help and refuse a bad value when parsed, and the
// environment is parsed by the same rules.
type binding struct {
	// value is the option's flag value, reading and writing s's field.
	value func(s *Settings) pflag.Value
	// copy sets dst's field to src's.
	copy func(dst, src *Settings)
}

func bind[T any](field func(*Settings) *T, value func(*T) pflag.Value) binding {
	return binding{
		value: func(s *Settings) pflag.Value { return value(field(s)) },
		copy:  func(dst, src *Settings) { *field(dst) = *field(src) },
	}
}

func str(p func(*Settings) *string) binding {
	return bind(p, func(v *string) pflag.Value { return (*stringValue)(v) })
}

func num(p func(*Settings) *int) binding {
	return bind(p, func(v *int) pflag.Value { return (*intValue)(v) })
}

func dur(p func(*Settings) *time.Duration) binding {
	return bind(p, func(v *time.Duration) pflag.Value { return (*durationValue)(v) })
}

func durs(p func(*Settings) *[]time.Duration) binding {
	return bind(p, func(v *[]time.Duration) pflag.Value { return (*durationsValue)(v) })
}

// strs is a comma-separated list setting.
func strs(p func(*Settings) *[]string) binding {
	return bind(p, func(v *[]string) pflag.Value { return (*stringsValue)(v) })
}

func byteSize(p func(*Settings) *ByteSize) binding {
	return bind(p, func(v *ByteSize) pflag.Value { return v })
}

// options are all the settings that are flags, by area.
func options() []option {
	var all []option
	for _, area := range [][]option{coreOptions(), trustOptions(), forgeOptions(), httpOptions(), isolationOptions(), imageOptions(), stateOptions(), machineOptions(), monitoringOptions(),
		loginOptions(), healthOptions(), gitMirrorOptions()} {
		all = append(all, area...)
	}
	return all
}

// flagValue is the value of a registered option's flag. Flags are parsed
// before the --config file is read, so they parse into a Settings of
// their own (target); loadSettings copies the ones that were set over
// the file and the environment.
type flagValue struct {
	pflag.Value
	opt    option
	target *Settings
}

// addFlags registers the named options, plus --config, on fs.
func addFlags(fs *pflag.FlagSet, names ...string) {
	if fs.Lookup("config") == nil {
		fs.String("config", "", "YAML file with settings (keys as the flags, with _ for -)")
	}
	addOptions(fs, names...)
}

// addOptions registers the named options on fs, each with its type and
// its default.
func addOptions(fs *pflag.FlagSet, names ...string) {
	byName := map[string]option{}
	for _, o := range options() {
		byName[o.name] = o
	}
	target := defaults()
	for _, n := range names {
		o, ok := byName[n]
		if !ok {
			panic("unknown option " + n)
		}
		v := &flagValue{Value: o.value(&target), opt: o, target: &target}
		fs.Var(v, n, o.usage)
		if b, ok := v.Value.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() {
			fs.Lookup(n).NoOptDefVal = "true" // --NAME alone turns it on
		}
	}
}

func envName(flag string) string {
	return "TURTLES_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// loadSettings applies, in order, defaults, the config file, environment
// variables and flags that were set, then fills derived defaults and
// validates.
func loadSettings(fs *pflag.FlagSet) (Settings, error) {
	s := defaults()
	if path, _ := fs.GetString("config"); path != "" {
		if err := readConfigFile(path, &s); err != nil {
			return s, err
		}
		s.ConfigFile = path
	}
	var errs []error
	fs.VisitAll(func(f *pflag.Flag) {
		v, ok := f.Value.(*flagValue)
		switch {
		case !ok:
		case f.Changed:
			v.opt.copy(&s, v.target)
		default:
			env, ok := os.LookupEnv(envName(f.Name))
			if !ok {
				return
			}
			if err := v.opt.value(&s).Set(env); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", envName(f.Name), err))
			}
		}
	})
	if err := errors.Join(errs...); err != nil {
		return s, err
	}
	s.fill()
	return s, s.validate()
}

// The flag values of the option types. Their Type is what --help shows;
// their errors say what is wanted, for flags and environment alike.
type (
	stringValue    string
	intValue       int
	durationValue  time.Duration
	durationsValue []time.Duration
	stringsValue   []string
)

func (v *stringValue) Set(s string) error { *v = stringValue(s); return nil }
func (v *stringValue) String() string     { return string(*v) }
func (v *stringValue) Type() string       { return "string" }

func (v *intValue) Set(s string) error {
	n, err := strconv.Atoi(s)
	if err != nil {
		return fmt.Errorf("want a whole number, got %q", s)
	}
	*v = intValue(n)
	return nil
}
func (v *intValue) String() string { return strconv.Itoa(int(*v)) }
func (v *intValue) Type() string   { return "int" }

func (v *durationValue) Set(s string) error {
	d, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("want a duration such as 90s or 10m, got %q", s)
	}
	*v = durationValue(d)
	return nil
}
func (v *durationValue) String() string { return time.Duration(*v).String() }
func (v *durationValue) Type() string   { return "duration" }

func (v *durationsValue) Set(s string) error {
	var out []time.Duration
	for _, part := range strings.Split(s, ",") {
		d, err := time.ParseDuration(strings.TrimSpace(part))
		if err != nil || d < 0 {
			return fmt.Errorf("want durations separated by commas, such as 10s,1m; got %q", s)
		}
		out = append(out, d)
	}
	*v = out
	return nil
}

func (v *durationsValue) String() string {
	parts := make([]string, len(*v))
	for i, d := range *v {
		parts[i] = d.String()
	}
	return strings.Join(parts, ",")
}
func (v *durationsValue) Type() string { return "durations" }

// Set takes a comma-separated list; blanks around items and empty items
// are dropped, so "" is the empty list. A repeated flag replaces the list.
func (v *stringsValue) Set(s string) error {
	var out []string
	for _, part := range strings.Split(s, ",") {
		if part = strings.TrimSpace(part); part != "" {
			out = append(out, part)
		}
	}
	*v = out
	return nil
}
func (v *stringsValue) String() string { return strings.Join(*v, ",") }
func (v *stringsValue) Type() string   { return "strings" }

// ByteSize is a size in bytes, written 67108864 or 64MiB in flags,
// environment variables and config files alike.
type ByteSize int64

// UnmarshalText implements encoding.TextUnmarshaler, for config files.
func (b *ByteSize) UnmarshalText(text []byte) error {
	n, err := humanize.ParseBytes(string(text))
	if err != nil || n > 1<<40 {
		return fmt.Errorf("want a size such as 64MiB, got %q", text)
	}
	*b = ByteSize(n)
	return nil
}

// Set implements pflag.Value.
func (b *ByteSize) Set(s string) error { return b.UnmarshalText([]byte(s)) }

// Type implements pflag.Value.
func (b *ByteSize) Type() string { return "size" }

// String is the size in the largest binary unit that divides it, so that
// it reads back exactly: 64MiB, 1536KiB, 1000.
func (b *ByteSize) String() string {
	n := int64(*b)
	for _, u := range []struct {
		name string
		size int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if n != 0 && n%u.size == 0 {
			return strconv.FormatInt(n/u.size, 10) + u.name
		}
	}
	return strconv.FormatInt(n, 10)
}
