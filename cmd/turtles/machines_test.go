package main

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/spf13/pflag"

	"github.com/turtles-ci/turtles/bot"
	"github.com/turtles-ci/turtles/image/debian"
	"github.com/turtles-ci/turtles/kubernetes"
)

// TestTaskVMs: the VMs of tasks get their size and times from cmd's
// settings (defaults, file, environment, flags), and the bot accepts
// them: no library fills one in.
func TestTaskVMs(t *testing.T) {
	tests := []struct {
		name string
		file string
		env  map[string]string
		args []string
		want bot.VMConfig
	}{
		{name: "defaults",
			want: bot.VMConfig{CPUs: 2, MemoryMB: 1024, BootTimeout: 5 * time.Minute, StopGrace: time.Second, QEMU: "qemu-system-x86_64"}},
		{name: "file", file: "vm_cpus: 4\nvm_memory: 3GiB\nvm_boot_timeout: 90s\n",
			want: bot.VMConfig{CPUs: 4, MemoryMB: 3072, BootTimeout: 90 * time.Second, StopGrace: time.Second, QEMU: "qemu-system-x86_64"}},
		{name: "environment over file", file: "vm_cpus: 4\n", env: map[string]string{"TURTLES_VM_CPUS": "6", "TURTLES_VM_MEMORY": "512MiB"},
			want: bot.VMConfig{CPUs: 6, MemoryMB: 512, BootTimeout: 5 * time.Minute, StopGrace: time.Second, QEMU: "qemu-system-x86_64"}},
		{name: "flags over environment", env: map[string]string{"TURTLES_VM_CPUS": "6"}, args: []string{"--vm-cpus", "8", "--vm-boot-timeout", "10m"},
			want: bot.VMConfig{CPUs: 8, MemoryMB: 1024, BootTimeout: 10 * time.Minute, StopGrace: time.Second, QEMU: "qemu-system-x86_64"}},
		{name: "warm starts off", args: []string{"--vm-warm-states", "off"},
			want: bot.VMConfig{CPUs: 2, MemoryMB: 1024, BootTimeout: 5 * time.Minute, StopGrace: time.Second, QEMU: "qemu-system-x86_64", Warm: "off"}},
		{name: "warm states elsewhere", file: "vm_warm_states: /var/cache/turtles-warm\n",
			want: bot.VMConfig{CPUs: 2, MemoryMB: 1024, BootTimeout: 5 * time.Minute, StopGrace: time.Second, QEMU: "qemu-system-x86_64", Warm: "/var/cache/turtles-warm"}},
		{name: "hold limit", args: []string{"--hold-limit", "200MiB"},
			want: bot.VMConfig{CPUs: 2, MemoryMB: 1024, BootTimeout: 5 * time.Minute, StopGrace: time.Second, QEMU: "qemu-system-x86_64", HoldLimit: 200 << 20}},
		{name: "machine limits", file: "vm_max_machines: 3\n", args: []string{"--vm-max-cpus", "6", "--vm-max-memory", "4GiB"},
			want: bot.VMConfig{CPUs: 2, MemoryMB: 1024, BootTimeout: 5 * time.Minute, StopGrace: time.Second, QEMU: "qemu-system-x86_64",
				MaxMachines: 3, MaxCPUs: 6, MaxMemoryMB: 4096}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("TURTLES_GITHUB_TOKEN", "")
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			args := append([]string{"--data-dir", t.TempDir(), "--sandbox", "off"}, tt.args...)
			if tt.file != "" {
				p := filepath.Join(t.TempDir(), "turtles.yaml")
				if err := os.WriteFile(p, []byte(tt.file), 0o600); err != nil {
					t.Fatal(err)
				}
				args = append(args, "--config", p)
			}
			s, err := parseSettings(func(fs *pflag.FlagSet) { fs.AddFlagSet(botCmd().Flags()) }, args...)
			if err != nil {
				t.Fatal(err)
			}
			got := s.taskVMs(taskVMDir(s.WorkDir), nil)
			if tt.want.MaxMachines == 0 { // the defaults
				tt.want.MaxMachines, tt.want.MaxCPUs, tt.want.MaxMemoryMB = 8, 16, 16<<10
			}
			tt.want.ImagesDir, tt.want.Dir = s.ImagesDir, filepath.Join(s.WorkDir, "vms")
			switch tt.want.Warm {
			case "": // the default: beside the images
				tt.want.Warm = filepath.Join(s.ImagesDir, "warm")
			case "off":
				tt.want.Warm = ""
			}
			if tt.want.HoldLimit == 0 {
				tt.want.HoldLimit = defaultHoldLimit
			}
			if diff := cmp.Diff(tt.want, got, cmpopts.IgnoreFields(bot.VMConfig{}, "Log", "Providers")); diff != "" {
				t.Errorf("VM config (-want +got):\n%s", diff)
			}
			// The cluster providers: plain, and Kubernetes with the
			// settings' mirror and the image cache.
			k, ok := got.Providers["kubernetes"].(*kubernetes.Provider)
			if _, plain := got.Providers["plain"]; !plain || !ok || len(got.Providers) != 2 ||
				k.Mirror != s.DebianMirror || k.ImageCache != debian.CacheDir() || k.Binaries == nil {
				t.Errorf("providers %+v", got.Providers)
			}
			sys, err := openSystem(s, slog.New(slog.DiscardHandler), botParts)
			if err != nil {
				t.Fatalf("a bot with these settings: %v", err)
			}
			sys.Close()
		})
	}
}

// TestMachineSettingsErrors: a VM setting no machine could have is an
// error at start that names it.
func TestMachineSettingsErrors(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{name: "no CPUs", args: []string{"--vm-cpus", "0"}, wantErr: "vm-cpus: 0 is not between 1 and 64"},
		{name: "too many CPUs", args: []string{"--vm-cpus", "65"}, wantErr: "vm-cpus: 65 is not between 1 and 64"},
		{name: "memory not in MiB", args: []string{"--vm-memory", "1000000000"}, wantErr: "vm-memory: 1000000000 is not a whole number of MiB"},
		{name: "too little memory", args: []string{"--vm-memory", "64MiB"}, wantErr: "vm-memory: 64MiB is not a whole number of MiB between 128MiB"},
		{name: "no boot timeout", args: []string{"--vm-boot-timeout", "0s"}, wantErr: "vm-boot-timeout: 0s, want more than 0"},
		{name: "no mirror", args: []string{"--debian-mirror", ""}, wantErr: "debian-mirror: empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseSettings(func(fs *pflag.FlagSet) {
				addFlags(fs, "data-dir", "debian-mirror")
				addOptions(fs, vmFlags...)
			}, append([]string{"--data-dir", t.TempDir()}, tt.args...)...)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

// TestMachineHelp: the commands that decide a machine's size, times or
// mirror show the setting with its type and default.
func TestMachineHelp(t *testing.T) {
	tests := []struct {
		name  string
		flags *pflag.FlagSet
		want  []string
	}{
		{name: "serve", flags: serveCmd().Flags(), want: []string{"--vm-cpus int", "(default 2)", "--vm-memory size", "(default 1GiB)", "--vm-boot-timeout duration", "(default 5m0s)"}},
		{name: "bot", flags: botCmd().Flags(), want: []string{"--vm-cpus int", "--vm-memory size", "--vm-boot-timeout duration"}},
		{name: "run", flags: runCmd().Flags(), want: []string{"--vm-cpus int", "--vm-memory size", "--vm-boot-timeout duration"}},
		{name: "image build", flags: imageBuildCmd().Flags(), want: []string{"--debian-mirror string", `(default "http://deb.debian.org/debian")`}},
		{name: "vm start", flags: vmStartCmd().Flags(), want: []string{"--cpus int", "(default 2)", "--memory int", "(default 1024)", "--boot-timeout duration", "(default 5m0s)"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			usage := tt.flags.FlagUsages()
			for _, w := range tt.want {
				if !strings.Contains(usage, w) {
					t.Errorf("--help lacks %q:\n%s", w, usage)
				}
			}
		})
	}
}
