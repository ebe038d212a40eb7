package main

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/turtles-ci/turtles/config"
)

// Settings is every knob of turtles, in one place. Precedence, lowest
// first: defaults, the --config file, TURTLES_* environment variables,
// command-line flags. Nothing outside cmd/ decides a default.
type Settings struct {
	DataDir   string `yaml:"data_dir"`
	Listen    string `yaml:"listen"`
	PublicURL string `yaml:"public_url"`
	// Queue is the embedded queue's SQLite file, or an amqp:// or amqps://
	// URL for RabbitMQ (docs/distributed.md).
	Queue string `yaml:"queue"`
	// Database is the state database's SQLite file, or a postgres:// URL
	// (state.go); the Retain* settings say what it forgets when.
	Database         string        `yaml:"database"`
	RetainDeliveries time.Duration `yaml:"retain_deliveries"`
	RetainEvents     time.Duration `yaml:"retain_events"`
	RetainFinals     time.Duration `yaml:"retain_finals"`
	RetainTasks      time.Duration `yaml:"retain_tasks"`
	// RetainBots and BotHeartbeat: bots' heartbeats in the state
	// database (options registered in monitoring.go).
	RetainBots    time.Duration `yaml:"retain_bots"`
	BotHeartbeat  time.Duration `yaml:"bot_heartbeat"`
	Lease         time.Duration `yaml:"lease"`
	MaxDeliveries int           `yaml:"max_deliveries"`
	BotName       string        `yaml:"bot_name"`
	Pool          string        `yaml:"pool"`
	Slots         int           `yaml:"slots"`
	WorkDir       string        `yaml:"work_dir"`
	StoreDir      string        `yaml:"store_dir"`
	DrainTimeout  time.Duration `yaml:"drain_timeout"`
	// RetryDelays are the waits before retrying an infrastructure failure,
	// by attempt; the last one repeats until max-deliveries.
	RetryDelays []time.Duration `yaml:"retry_delays"`
	GitHubAPI   string          `yaml:"github_api"`
	// Secrets are read from files (or TURTLES_GITHUB_TOKEN and
	// TURTLES_WEBHOOK_SECRET), never from the config file itself.
	GitHubTokenFile   string `yaml:"github_token_file"`
	WebhookSecretFile string `yaml:"webhook_secret_file"`
	LogLevel          string `yaml:"log_level"`
	LogFormat         string `yaml:"log_format"`

	// Forge is github or gitlab (options registered in forges.go).
	Forge                string `yaml:"forge"`
	GitLabURL            string `yaml:"gitlab_url"`
	GitLabTokenFile      string `yaml:"gitlab_token_file"`
	GitHubAppID          int    `yaml:"github_app_id"`
	GitHubAppKeyFile     string `yaml:"github_app_key_file"`
	GitHubInstallationID int    `yaml:"github_installation_id"`

	// Store, an s3:// URL, puts logs and artifacts in S3 instead of
	// StoreDir (see openStore in store.go).
	Store             string `yaml:"store"`
	S3CredentialsFile string `yaml:"s3_credentials_file"`

	// Trust and scanning (options registered in scan.go).
	TrustedOrgs   []string      `yaml:"trusted_orgs"`
	TrustedUsers  []string      `yaml:"trusted_users"`
	ScanRepos     []string      `yaml:"scan_repos"`
	ScanBranches  []string      `yaml:"scan_branches"`
	ScanInterval  time.Duration `yaml:"scan_interval"`
	CloneBaseURL  string        `yaml:"clone_base_url"`
	DefaultConfig string        `yaml:"default_config"`

	// ImagesDir is where VM image names resolve (turtles image build
	// writes there by default).
	ImagesDir string `yaml:"images_dir"`
	// ImageMirrors and ImagePeers are where bots and `turtles image pull`
	// fetch pinned images they lack (options registered in images.go).
	ImageMirrors []string `yaml:"image_mirrors"`
	ImagePeers   string   `yaml:"image_peers"`
	// ImageMaxSize caps the bytes a pinned image's manifest may claim
	// before a fetch starts.
	ImageMaxSize ByteSize `yaml:"image_max_size"`
	// VMCPUs, VMMemory and VMBootTimeout size and time the VMs of tasks
	// whose context does not say (options registered in machines.go).
	VMCPUs        int           `yaml:"vm_cpus"`
	VMMemory      ByteSize      `yaml:"vm_memory"`
	VMBootTimeout time.Duration `yaml:"vm_boot_timeout"`
	// VMMaxMachines, VMMaxCPUs and VMMaxMemory bound what one task's
	// machines: may ask for in all; 0 for no limit (machines.go).
	VMMaxMachines int      `yaml:"vm_max_machines"`
	VMMaxCPUs     int      `yaml:"vm_max_cpus"`
	VMMaxMemory   ByteSize `yaml:"vm_max_memory"`
	// VMWarmStates is where saved VM states are kept for warm starts:
	// "" for IMAGES-DIR/warm, "off" for none.
	VMWarmStates string `yaml:"vm_warm_states"`
	// HoldLimit bounds a held VM's compressed size (a context's hold:);
	// 0 holds none.
	HoldLimit ByteSize `yaml:"hold_limit"`
	// DebianMirror is where `turtles image build` installs from.
	DebianMirror string `yaml:"debian_mirror"`
	// SecretsDir holds the secrets bots give trusted tasks by name: one
	// file per name holding the value, as Kubernetes mounts a secret.
	SecretsDir string `yaml:"secrets_dir"`
	// HealthListen is where a bot serves its health endpoint (health.go);
	// empty: nowhere.
	HealthListen string `yaml:"health_listen"`
	// KnownIssues are directories of the server's known-issue patterns
	// (package triage), searched for every repository's failed tests on
	// top of turtles' own.
	KnownIssues []string `yaml:"known_issues"`

	// HTTP servers' and webhook receivers' limits (options registered in
	// http.go).
	HTTPReadTimeout   time.Duration `yaml:"http_read_timeout"`
	HTTPIdleTimeout   time.Duration `yaml:"http_idle_timeout"`
	WebhookBodyBudget ByteSize      `yaml:"webhook_body_budget"`
	WebhookBodyWait   time.Duration `yaml:"webhook_body_wait"`
	// WebhookPublishTimeout bounds a webhook's wait for the queue.
	WebhookPublishTimeout time.Duration `yaml:"webhook_publish_timeout"`

	// What untrusted work may ask for, and how bots isolate commands
	// (options registered in isolation.go).
	UntrustedPools       []string      `yaml:"untrusted_pools"`
	UntrustedHostPools   []string      `yaml:"untrusted_host_pools"`
	UntrustedMaxTimeout  time.Duration `yaml:"untrusted_max_timeout"`
	UntrustedMaxPriority int           `yaml:"untrusted_max_priority"`
	UntrustedMaxCPUs     int           `yaml:"untrusted_max_cpus"`
	UntrustedMaxMemory   ByteSize      `yaml:"untrusted_max_memory"`
	MaxContexts          int           `yaml:"max_contexts"`
	Sandbox              string        `yaml:"sandbox"`
	SandboxUIDBase       int           `yaml:"sandbox_uid_base"`

	// The dashboard's sign-in and actions (options registered in
	// login.go); secrets from files or the environment.
	OAuthGitHubClientID         string `yaml:"oauth_github_client_id"`
	OAuthGitHubClientSecretFile string `yaml:"oauth_github_client_secret_file"`
	OAuthGitLabClientID         string `yaml:"oauth_gitlab_client_id"`
	OAuthGitLabClientSecretFile string `yaml:"oauth_gitlab_client_secret_file"`
	SessionKeyFile              string `yaml:"session_key_file"`
	Private                     bool   `yaml:"private"`

	// The git mirror (options registered in gitmirror.go): bots fetch
	// through it; git-mirror serves it.
	GitMirror             string        `yaml:"git_mirror"`
	GitMirrorTokenFile    string        `yaml:"git_mirror_token_file"`
	GitMirrorDir          string        `yaml:"git_mirror_dir"`
	GitMirrorInterval     time.Duration `yaml:"git_mirror_interval"`
	GitMirrorFetchTimeout time.Duration `yaml:"git_mirror_fetch_timeout"`
	GitMirrorMaxSize      ByteSize      `yaml:"git_mirror_max_size"`

	// ConfigFile is the --config file read, if any: hidden from tasks.
	ConfigFile string `yaml:"-"`
	// PublicURLDerived says PublicURL was not given but made from Listen;
	// PublicURLHostname that Listen's host was a wildcard, so the host's
	// name stands in for it (other hosts may not resolve it).
	PublicURLDerived  bool `yaml:"-"`
	PublicURLHostname bool `yaml:"-"`
}

// heartbeat is how often a bot extends the lease of a running task: three
// beats per lease, so that one lost or late beat does not lose the task.
func (s Settings) heartbeat() time.Duration { return s.Lease / 3 }

// killGrace is how long a task's command has from SIGTERM to SIGKILL (a
// timeout, a cancel, a drain that ran out): long enough to write a core
// or flush a log, short enough that a stuck one does not hold a slot.
const killGrace = 10 * time.Second

// The retry backoff of the event consumer (report.Consumer): a handler's
// error (the forge is down, the results store is busy) is retried after
// a second, then after twice as long each time, up to once a minute.
const (
	eventRetryMin = time.Second
	eventRetryMax = time.Minute
)

func defaults() Settings {
	s := Settings{
		DataDir:       "./turtles-data",
		Listen:        "localhost:8080",
		Lease:         time.Minute,
		MaxDeliveries: 5,
		Pool:          "public",
		Slots:         runtime.NumCPU(),
		DrainTimeout:  10 * time.Minute,
		RetryDelays:   []time.Duration{10 * time.Second, 30 * time.Second, 90 * time.Second, 5 * time.Minute},
		GitHubAPI:     "https://api.github.com/",
		Forge:         forgeGitHub,
		GitLabURL:     "https://gitlab.com/",
		LogLevel:      "info",
		LogFormat:     "text",
		ScanBranches:  []string{"main"},
		ScanInterval:  10 * time.Minute,
		CloneBaseURL:  "https://github.com/",
	}
	httpDefaults(&s)
	imageDefaults(&s)
	isolationDefaults(&s)
	stateDefaults(&s)
	machineDefaults(&s)
	monitoringDefaults(&s)
	gitMirrorDefaults(&s)
	return s
}

// coreOptions are the settings most commands share.
func coreOptions() []option {
	return []option{
		opt("data-dir", "where queue, results, logs and workspaces live", str(func(s *Settings) *string { return &s.DataDir })),
		opt("listen", "address of the web server (webhooks, API, logs, metrics); one specific address such as 192.0.2.10:8080 (or a reverse proxy) to accept webhooks from other hosts", str(func(s *Settings) *string { return &s.Listen })),
		opt("public-url", "URL people and forges reach the log pages at, for log links (default http://LISTEN, with the host's name for a wildcard such as :8081)", str(func(s *Settings) *string { return &s.PublicURL })),
		opt("queue", "embedded queue file (default DATA-DIR/queue.db), or amqp://USER:PASS@HOST/VHOST for RabbitMQ", str(func(s *Settings) *string { return &s.Queue })),
		opt("lease", "how long a claimed task stays claimed without a heartbeat; a dead bot's task runs again after this", dur(func(s *Settings) *time.Duration { return &s.Lease })),
		opt("max-deliveries", "deliveries of a task before it is dead-lettered", num(func(s *Settings) *int { return &s.MaxDeliveries })),
		opt("bot-name", "name of this bot in logs and statuses (default: host name and a suffix from the work dir, so that bots of one host differ)", str(func(s *Settings) *string { return &s.BotName })),
		opt("pool", "pool of tasks this bot takes", str(func(s *Settings) *string { return &s.Pool })),
		opt("slots", "tasks this bot runs at once (default: number of CPUs)", num(func(s *Settings) *int { return &s.Slots })),
		opt("work-dir", "where bots check out and run tasks (default DATA-DIR/work)", str(func(s *Settings) *string { return &s.WorkDir })),
		opt("store-dir", "where logs and artifacts are kept (default DATA-DIR/store)", str(func(s *Settings) *string { return &s.StoreDir })),
		opt("store", "s3://BUCKET/PREFIX?endpoint=URL&region=R&path_style=true to keep logs and artifacts in S3 (default: --store-dir)", str(func(s *Settings) *string { return &s.Store })),
		opt("s3-credentials-file", "file with the S3 access key and secret key on two lines (or set TURTLES_S3_ACCESS_KEY and TURTLES_S3_SECRET_KEY)", str(func(s *Settings) *string { return &s.S3CredentialsFile })),
		opt("images-dir", "where VM images are kept and their names resolve (default DATA-DIR/images)", str(func(s *Settings) *string { return &s.ImagesDir })),
		opt("secrets-dir", "directory of the secrets trusted tasks ask for by name: one file per name holding the value (a Kubernetes secret volume); default: none", str(func(s *Settings) *string { return &s.SecretsDir })),
		opt("known-issues", "comma-separated directories of the server's known-issue patterns (docs/triage.md), for every repository, on top of turtles' own", strs(func(s *Settings) *[]string { return &s.KnownIssues })),
		opt("drain-timeout", "on SIGTERM, how long running tasks may finish before they are put back", dur(func(s *Settings) *time.Duration { return &s.DrainTimeout })),
		opt("retry-delays", "comma-separated waits before retrying an infrastructure failure, by attempt", durs(func(s *Settings) *[]time.Duration { return &s.RetryDelays })),
		opt("github-api", "GitHub API base URL (GitHub Enterprise: https://HOST/api/v3/)", str(func(s *Settings) *string { return &s.GitHubAPI })),
		opt("github-token-file", "file holding the GitHub token for statuses (or set TURTLES_GITHUB_TOKEN)", str(func(s *Settings) *string { return &s.GitHubTokenFile })),
		opt("webhook-secret-file", "file holding the webhook secret (or set TURTLES_WEBHOOK_SECRET; default: generated in DATA-DIR/webhook-secret)", str(func(s *Settings) *string { return &s.WebhookSecretFile })),
		opt("log-level", "debug, info, warn or error", str(func(s *Settings) *string { return &s.LogLevel })),
		opt("log-format", "text or json", str(func(s *Settings) *string { return &s.LogFormat })),
	}
}

func readConfigFile(path string, s *Settings) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read config: %w", err)
	}
	return config.DecodeStrict(path, b, s)
}

func (s *Settings) fill() {
	if s.Queue == "" {
		s.Queue = filepath.Join(s.DataDir, "queue.db")
	}
	if s.Database == "" {
		s.Database = filepath.Join(s.DataDir, "state.db")
	}
	if s.WorkDir == "" {
		s.WorkDir = filepath.Join(s.DataDir, "work")
	}
	if s.StoreDir == "" {
		s.StoreDir = filepath.Join(s.DataDir, "store")
	}
	if s.BotName == "" {
		host, _ := os.Hostname()
		s.BotName = defaultBotName(host, s.WorkDir)
	}
	if s.ImagesDir == "" {
		s.ImagesDir = filepath.Join(s.DataDir, "images")
	}
	if s.PublicURL == "" {
		// Links are built by the process that serves the pages: its own
		// address is the best guess. A wildcard is no address; the
		// host's name is the one others most likely reach it by.
		host := s.Listen
		if h, p, err := net.SplitHostPort(s.Listen); err == nil && (h == "" || h == "0.0.0.0" || h == "::") {
			name, err := os.Hostname()
			if err != nil || name == "" {
				name = "localhost"
			}
			host = net.JoinHostPort(name, p)
			s.PublicURLHostname = true
		}
		s.PublicURL = "http://" + host
		s.PublicURLDerived = true
	}
	s.PublicURL = strings.TrimRight(s.PublicURL, "/")
}

func (s *Settings) validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if s.Slots < 1 || s.Slots > 1024 {
		bad("slots: %d is not between 1 and 1024", s.Slots)
	}
	if s.Lease < time.Second {
		bad("lease: %s is shorter than 1s", s.Lease)
	}
	if s.MaxDeliveries < 1 {
		bad("max-deliveries: %d, want at least 1", s.MaxDeliveries)
	}
	if len(s.RetryDelays) == 0 {
		bad("retry-delays: empty")
	}
	if s.DrainTimeout < 0 {
		bad("drain-timeout: negative")
	}
	if s.ScanInterval < 0 {
		bad("scan-interval: negative; 0 scans only at start")
	}
	if _, _, err := net.SplitHostPort(s.Listen); err != nil {
		bad("listen: %q is not HOST:PORT", s.Listen)
	}
	if !strings.HasPrefix(s.PublicURL, "http://") && !strings.HasPrefix(s.PublicURL, "https://") {
		bad("public-url: %q is not an http(s) URL", s.PublicURL)
	}
	switch s.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		bad("log-level: %q, want debug, info, warn or error", s.LogLevel)
	}
	switch s.LogFormat {
	case "text", "json":
	default:
		bad("log-format: %q, want text or json", s.LogFormat)
	}
	if s.BotName == "" {
		bad("bot-name: empty")
	}
	if err := s.validateForge(); err != nil {
		errs = append(errs, err)
	}
	if err := s.validateHTTP(); err != nil {
		errs = append(errs, err)
	}
	if err := s.validateIsolation(); err != nil {
		errs = append(errs, err)
	}
	if err := s.validateState(); err != nil {
		errs = append(errs, err)
	}
	if err := s.validateMachines(); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(s.validateMonitoring(), s.validateLogin(), s.validateGitMirror()); err != nil {
		errs = append(errs, err)
	}
	if isAMQP(s.Queue) {
		if u, err := url.Parse(s.Queue); err != nil || u.Host == "" {
			bad("queue: %s is not a valid AMQP URL", redactQueue(s.Queue))
		}
	}
	return errors.Join(errs...)
}

// envSecrets keeps the secrets taken out of the environment by secret.
var (
	envSecretsMu sync.Mutex
	envSecrets   = map[string]string{}
)

// secret reads a secret from the environment variable env or from file.
// Neither gives "", nil. Trailing newlines are not part of the secret.
func secret(env, file string) (string, error) {
	envSecretsMu.Lock()
	defer envSecretsMu.Unlock()
	if v := os.Getenv(env); v != "" {
		// No child (git, QEMU, a task) inherits it from here on.
		os.Unsetenv(env)
		envSecrets[env] = v
	}
	if v, ok := envSecrets[env]; ok {
		return v, nil
	}
	if file == "" {
		return "", nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("read secret: %w", err)
	}
	v := strings.TrimRight(string(b), "\r\n")
	if v == "" {
		return "", fmt.Errorf("secret file %s is empty", file)
	}
	return v, nil
}

// webhookSecret returns the configured secret, or the one generated in
// the data dir on first start so that `turtles serve` works with no flags.
func webhookSecret(s Settings) (secretValue, path string, err error) {
	v, err := secret("TURTLES_WEBHOOK_SECRET", s.WebhookSecretFile)
	if err != nil || v != "" {
		return v, s.WebhookSecretFile, err
	}
	path = filepath.Join(s.DataDir, "webhook-secret")
	if b, err := os.ReadFile(path); err == nil && len(bytes.TrimSpace(b)) > 0 {
		return strings.TrimSpace(string(b)), path, nil
	}
	buf := make([]byte, 32)
	rand.Read(buf)
	v = hex.EncodeToString(buf)
	if err := os.WriteFile(path, []byte(v+"\n"), 0o600); err != nil {
		return "", "", fmt.Errorf("write generated webhook secret: %w", err)
	}
	return v, path, nil
}

// defaultBotName names a bot after its host and its work dir: two bots of
// one host (which need two work dirs) get two names, and a bot restarted
// with the same work dir keeps its name.
func defaultBotName(host, workDir string) string {
	if host == "" {
		host = "bot"
	}
	if abs, err := filepath.Abs(workDir); err == nil {
		workDir = abs
	}
	sum := sha256.Sum256([]byte(workDir))
	return host + "-" + hex.EncodeToString(sum[:3])
}
