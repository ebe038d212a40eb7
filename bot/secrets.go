package bot

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/turtles-ci/turtles"
)

// secretNameRe is what .turtles.yaml allows as a secret name; a task from
// anywhere else is held to it too, since the name becomes a file name.
var secretNameRe = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,63}$`)

// maxSecretSize is Kubernetes' limit on a whole secret.
const maxSecretSize = 1 << 20

// secrets are the secret values of one attempt.
type secrets struct {
	env    []string // NAME=value, for the command
	values []string // for the scrubber
}

// resolveSecrets reads the values of names from dir, one file per name
// holding the value (trailing newlines dropped), as Kubernetes mounts a
// secret as a volume. A secret this bot does not have is an infra Fault
// whose reason names it: another bot may have it, and a person can add
// it. Errors never quote a value.
func resolveSecrets(dir string, names []string) (secrets, error) {
	var s secrets
	for _, name := range names {
		if !secretNameRe.MatchString(name) {
			return secrets{}, turtles.InfraFault(fmt.Sprintf("secret name %q is not valid", name), nil)
		}
		if dir == "" {
			return secrets{}, turtles.InfraFault(notHere(name), errors.New("it has no secrets directory (setting secrets_dir)"))
		}
		v, err := readSecret(filepath.Join(dir, name))
		if errors.Is(err, fs.ErrNotExist) {
			return secrets{}, turtles.InfraFault(notHere(name), fmt.Errorf("no file %s in its secrets directory", name))
		}
		if err != nil {
			return secrets{}, turtles.InfraFault("the bot could not read secret "+name, fmt.Errorf("read secret %s: %w", name, err))
		}
		s.env = append(s.env, name+"="+v)
		s.values = append(s.values, v)
	}
	return s, nil
}

func notHere(name string) string { return "secret " + name + " is not on this bot" }

// readSecret reads one secret file. Symbolic links are followed: a
// Kubernetes secret volume is made of them.
func readSecret(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil {
		return "", err
	} else if !fi.Mode().IsRegular() {
		return "", errors.New("not a regular file")
	}
	b, err := io.ReadAll(io.LimitReader(f, maxSecretSize+1))
	if err != nil {
		return "", err
	}
	if len(b) > maxSecretSize {
		return "", fmt.Errorf("larger than %d KiB", maxSecretSize>>10)
	}
	return strings.TrimRight(string(b), "\r\n"), nil
}

// secretScrubber is the task log, which masks secret values once told.
type secretScrubber interface {
	setSecrets(values []string) error
}

// withSecrets resolves t's secrets for the runner that will run its
// command, and tells the log to mask their values. Untrusted work gets
// none, whatever it asks for (config.Restrict strips them already; this
// is the last line).
func (r runner) withSecrets(t turtles.Task, out io.Writer) (runner, error) {
	if len(t.Secrets) == 0 {
		return r, nil
	}
	if !t.Trusted {
		logf(out, "secrets withheld (%s): this work is not from a trusted author", strings.Join(t.Secrets, ", "))
		return r, nil
	}
	s, err := resolveSecrets(r.secretsDir, t.Secrets)
	if err != nil {
		return r, err
	}
	if sc, ok := out.(secretScrubber); ok {
		if err := sc.setSecrets(s.values); err != nil {
			return r, turtles.InfraFault(reasonLog, fmt.Errorf("write log: %w", err))
		}
	}
	logf(out, "secrets in the environment: %s (masked in this log)", strings.Join(t.Secrets, ", "))
	r.secrets = s.env
	return r, nil
}

// writeSecretFiles writes each NAME=value of env as dir/NAME, readable
// by its owner only; the sandbox gives the workspace, and so them, to
// the task's uid alone.
func writeSecretFiles(dir string, env []string) error {
	if err := os.Mkdir(dir, 0o700); err != nil {
		return err
	}
	for _, kv := range env {
		name, value, _ := strings.Cut(kv, "=")
		if err := os.WriteFile(filepath.Join(dir, name), []byte(value), 0o400); err != nil {
			return err
		}
	}
	return nil
}
