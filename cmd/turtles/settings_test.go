package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/spf13/pflag"
)

// parseSettings parses args with the flags register adds and loads the
// settings, as a command does: a value a flag refuses is an error of the
// parse, one from elsewhere an error of loadSettings.
func parseSettings(register func(fs *pflag.FlagSet), args ...string) (Settings, error) {
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	fs.SetOutput(new(strings.Builder))
	register(fs)
	if err := fs.Parse(args); err != nil {
		return Settings{}, err
	}
	return loadSettings(fs)
}

// TestSettingsPrecedence: defaults, then the --config file, then
// TURTLES_* variables, then flags, each over the one before.
func TestSettingsPrecedence(t *testing.T) {
	type got struct {
		Lease       time.Duration
		Slots       int
		RetryDelays []time.Duration
		Trusted     []string
		Budget      ByteSize
		Pool        string
	}
	def := defaults()
	tests := []struct {
		name string
		file string
		env  map[string]string
		args []string
		want got
	}{
		{name: "defaults", want: got{def.Lease, def.Slots, def.RetryDelays, nil, def.WebhookBodyBudget, def.Pool}},
		{name: "file over defaults",
			file: "lease: 2m\nslots: 3\nretry_delays: [1s, 2s]\ntrusted_users: [ann]\nwebhook_body_budget: 96MiB\npool: file\n",
			want: got{2 * time.Minute, 3, []time.Duration{time.Second, 2 * time.Second}, []string{"ann"}, 96 << 20, "file"}},
		{name: "environment over file",
			file: "lease: 2m\nslots: 3\npool: file\n",
			env:  map[string]string{"TURTLES_LEASE": "3m", "TURTLES_RETRY_DELAYS": "5s", "TURTLES_TRUSTED_USERS": "bob, carol", "TURTLES_WEBHOOK_BODY_BUDGET": "32MiB"},
			want: got{3 * time.Minute, 3, []time.Duration{5 * time.Second}, []string{"bob", "carol"}, 32 << 20, "file"}},
		{name: "flags over environment",
			file: "lease: 2m\npool: file\n",
			env:  map[string]string{"TURTLES_LEASE": "3m", "TURTLES_SLOTS": "4", "TURTLES_POOL": "env"},
			args: []string{"--lease", "4m", "--slots", "5", "--retry-delays", "1s,1m", "--trusted-users", "dave", "--webhook-body-budget", "1000"},
			want: got{4 * time.Minute, 5, []time.Duration{time.Second, time.Minute}, []string{"dave"}, 1000, "env"}},
		{name: "a flag given its default still wins",
			env:  map[string]string{"TURTLES_LEASE": "3m"},
			args: []string{"--lease", def.Lease.String()},
			want: got{def.Lease, def.Slots, def.RetryDelays, nil, def.WebhookBodyBudget, def.Pool}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			args := append([]string{"--data-dir", t.TempDir()}, tt.args...)
			if tt.file != "" {
				p := filepath.Join(t.TempDir(), "turtles.yaml")
				if err := os.WriteFile(p, []byte(tt.file), 0o600); err != nil {
					t.Fatal(err)
				}
				args = append(args, "--config", p)
			}
			s, err := parseSettings(func(fs *pflag.FlagSet) {
				addFlags(fs, "data-dir", "lease", "slots", "retry-delays", "pool")
				addTrustFlags(fs)
				addHTTPFlags(fs)
			}, args...)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got{s.Lease, s.Slots, s.RetryDelays, s.TrustedUsers, s.WebhookBodyBudget, s.Pool}); diff != "" {
				t.Errorf("settings (-want +got):\n%s", diff)
			}
		})
	}
}

// TestSettingsErrors: a bad value says what is wanted and where it came
// from.
func TestSettingsErrors(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		file    string
		wantErr string
	}{
		{name: "duration without unit", args: []string{"--lease", "5"}, wantErr: `invalid argument "5" for "--lease" flag: want a duration such as 90s`},
		{name: "duration in the environment", env: map[string]string{"TURTLES_LEASE": "soon"}, wantErr: `TURTLES_LEASE: want a duration such as 90s or 10m, got "soon"`},
		{name: "number", args: []string{"--slots", "many"}, wantErr: `"--slots" flag: want a whole number, got "many"`},
		{name: "durations", args: []string{"--retry-delays", "1s,-1s"}, wantErr: "want durations separated by commas"},
		{name: "size", env: map[string]string{"TURTLES_WEBHOOK_BODY_BUDGET": "lots"}, wantErr: `TURTLES_WEBHOOK_BODY_BUDGET: want a size such as 64MiB, got "lots"`},
		{name: "unknown config key", file: "leese: 1m\n", wantErr: "leese"},
		{name: "valid type, invalid value", args: []string{"--lease", "10ms"}, wantErr: "lease: 10ms is shorter than 1s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			args := append([]string{"--data-dir", t.TempDir()}, tt.args...)
			if tt.file != "" {
				p := filepath.Join(t.TempDir(), "turtles.yaml")
				if err := os.WriteFile(p, []byte(tt.file), 0o600); err != nil {
					t.Fatal(err)
				}
				args = append(args, "--config", p)
			}
			_, err := parseSettings(func(fs *pflag.FlagSet) {
				addFlags(fs, "data-dir", "lease", "slots", "retry-delays")
				addHTTPFlags(fs)
			}, args...)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

// TestHelpShowsTypes: --help names each flag's type and default.
func TestHelpShowsTypes(t *testing.T) {
	cmd := serveCmd()
	usage := cmd.Flags().FlagUsages()
	for _, want := range []string{
		"--lease duration",
		"(default 1m0s)",
		"--slots int",
		"--retry-delays durations",
		"(default 10s,30s,1m30s,5m0s)",
		"--trusted-orgs strings",
		"--webhook-body-budget size",
		"(default 64MiB)",
		"--listen string",
		"--config string",
	} {
		if !strings.Contains(usage, want) {
			t.Errorf("serve --help lacks %q:\n%s", want, usage)
		}
	}
}

// TestEveryOptionRoundTrips: what a flag prints as its default, it reads
// back as the same value, so --help never shows a default that would
// mean something else if typed.
func TestEveryOptionRoundTrips(t *testing.T) {
	for _, o := range options() {
		d := defaults()
		text := o.value(&d).String()
		var back Settings
		if err := o.value(&back).Set(text); err != nil {
			t.Errorf("--%s: its default %q does not parse: %v", o.name, text, err)
			continue
		}
		if o.value(&back).String() != text {
			t.Errorf("--%s: default %q reads back as %q", o.name, text, o.value(&back).String())
		}
	}
	for _, n := range []ByteSize{0, 1, 1000, 1024, 1536 << 10, 64 << 20, 8 << 30, 1 << 40} {
		var back ByteSize
		if err := back.Set(n.String()); err != nil || back != n {
			t.Errorf("ByteSize %d prints %q, reads back as %d, %v", n, n.String(), back, err)
		}
	}
}
