package bot

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/turtles-ci/turtles"
	"github.com/turtles-ci/turtles/queue"
	"github.com/turtles-ci/turtles/store"
)

const secretValue = "tok-1234-very-secret"

// secretsDir is a directory laid out as Kubernetes mounts a secret:
// NAME -> ..data/NAME, with a trailing newline in the value.
func secretsDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	data := filepath.Join(dir, "..data")
	if err := os.Mkdir(data, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(data, "DEPLOY_TOKEN"), []byte(secretValue+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join("..data", "DEPLOY_TOKEN"), filepath.Join(dir, "DEPLOY_TOKEN")); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "HUGE"), make([]byte, maxSecretSize+1), 0o600)
	os.Mkdir(filepath.Join(dir, "ADIR"), 0o700)
	return dir
}

func TestResolveSecrets(t *testing.T) {
	dir := secretsDir(t)
	tests := []struct {
		name    string
		dir     string
		names   []string
		wantEnv []string
		wantErr string // in the error's text, for the log
		reason  string // the Fault's, for people
	}{
		{name: "none", dir: dir},
		{name: "kubernetes layout", dir: dir, names: []string{"DEPLOY_TOKEN"}, wantEnv: []string{"DEPLOY_TOKEN=" + secretValue}},
		{name: "missing", dir: dir, names: []string{"DEPLOY_TOKEN", "NOPE"}, wantErr: "secret NOPE is not on this bot: no file NOPE", reason: "secret NOPE is not on this bot"},
		{name: "no directory", names: []string{"DEPLOY_TOKEN"}, wantErr: "secret DEPLOY_TOKEN is not on this bot: it has no secrets directory",
			reason: "secret DEPLOY_TOKEN is not on this bot"},
		{name: "path in name", dir: dir, names: []string{"../DEPLOY_TOKEN"}, wantErr: `secret name "../DEPLOY_TOKEN" is not valid`, reason: `secret name "../DEPLOY_TOKEN" is not valid`},
		{name: "too large", dir: dir, names: []string{"HUGE"}, wantErr: "read secret HUGE: larger than", reason: "the bot could not read secret HUGE"},
		{name: "not a file", dir: dir, names: []string{"ADIR"}, wantErr: "read secret ADIR: not a regular file", reason: "the bot could not read secret ADIR"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := resolveSecrets(tt.dir, tt.names)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
				if f, ok := turtles.FaultOf(err); !ok || f.Class != turtles.Infra || f.Reason != tt.reason {
					t.Errorf("Fault %+v, %v; want class infra, reason %q", f, ok, tt.reason)
				}
				if strings.Contains(err.Error(), secretValue) {
					t.Errorf("error quotes the value: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if strings.Join(s.env, "\n") != strings.Join(tt.wantEnv, "\n") {
				t.Errorf("env = %q, want %q", s.env, tt.wantEnv)
			}
		})
	}
}

// TestSecretsInTask runs trusted, untrusted and unlucky tasks that ask for
// a secret through a bot whose store takes chunks (like S3), and checks
// the value reaches the command and nothing stored: chunks, the final log,
// result.json.
func TestSecretsInTask(t *testing.T) {
	old := chunkEvery
	chunkEvery = 20 * time.Millisecond
	t.Cleanup(func() { chunkEvery = old })
	h := newHarness(t, nil, queue.Options{MaxDeliveries: 1})
	h.cfg.SecretsDir = secretsDir(t)
	h.cfg.Store = putOnly{h.st}
	gate := filepath.Join(visibleDir(t), "gate")

	trusted := h.task(turtles.KindTest, "trusted", `echo "token=$DEPLOY_TOKEN"; printf 'split: %s' "$DEPLOY_TOKEN" | head -c 12; sleep 0.1; printf '%s\n' "$DEPLOY_TOKEN" | tail -c +6
echo "ok 1 - deploy with $DEPLOY_TOKEN"
mkdir -p "$TURTLES_ARTIFACTS"; echo x > "$TURTLES_ARTIFACTS/report-$DEPLOY_TOKEN.txt"
echo "len=${#DEPLOY_TOKEN}"
while [ ! -e `+gate+` ]; do sleep 0.05; done
test "$(printf %s "$DEPLOY_TOKEN" | tr a-z A-Z)" = TOK-1234-VERY-SECRET`)
	trusted.Trusted = true
	trusted.Secrets = []string{"DEPLOY_TOKEN"}
	h.publish(trusted)
	h.start()

	// While it runs: the chunks mask the value.
	key := store.AttemptPrefix(trusted) + store.LogName
	deadline := time.Now().Add(10 * time.Second)
	for {
		live, _ := readChunks(h.st, key)
		if strings.Contains(live, "len=20\n") {
			if strings.Contains(live, secretValue) || strings.Contains(live, secretValue[:12]) {
				t.Errorf("a chunk holds the secret:\n%s", live)
			}
			if !strings.Contains(live, "token=***\n") {
				t.Errorf("live log does not show the masked secret:\n%s", live)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the live log never showed the task's output: %q", live)
		}
		time.Sleep(20 * time.Millisecond)
	}
	os.WriteFile(gate, nil, 0o644)
	evs := h.events(finishedFor(trusted.Key()))
	log := h.log(trusted)
	if c := evs[len(evs)-1].Outcome.Class; c != turtles.Success {
		t.Fatalf("outcome %+v, want success (the command saw the value)\n%s", evs[len(evs)-1].Outcome, log)
	}
	if strings.Contains(log, secretValue) {
		t.Errorf("final log holds the secret:\n%s", log)
	}
	for _, want := range []string{"token=***\n", "split: ***\n", "len=20\n", "secrets in the environment: DEPLOY_TOKEN"} {
		if !strings.Contains(log, want) {
			t.Errorf("final log lacks %q:\n%s", want, log)
		}
	}
	resJSON, _ := h.object(store.AttemptPrefix(trusted) + store.ResultName)
	if strings.Contains(resJSON, secretValue) {
		t.Errorf("result.json holds the secret:\n%s", resJSON)
	}
	res := h.result(trusted)
	if len(res.Artifacts) != 1 || res.Artifacts[0].Name != "artifacts/report-***.txt" {
		t.Errorf("artifacts %+v, want the name masked", res.Artifacts)
	}
	keys, err := h.st.List(context.Background(), store.AttemptPrefix(trusted))
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if strings.Contains(k.Key, secretValue) {
			t.Errorf("stored key %q holds the secret", k.Key)
		}
	}
	if len(res.Tests) != 1 || res.Tests[0].Name != "deploy with ***" {
		t.Errorf("tests %+v, want the name masked", res.Tests)
	}

	// Untrusted work never gets the value, even if the task asks.
	untrusted := h.task(turtles.KindTest, "untrusted", `echo "token=[$DEPLOY_TOKEN]"`)
	untrusted.Secrets = []string{"DEPLOY_TOKEN"}
	h.publish(untrusted)
	evs = h.events(finishedFor(untrusted.Key()))
	log = h.log(untrusted)
	if c := evs[len(evs)-1].Outcome.Class; c != turtles.Success || !strings.Contains(log, "token=[]\n") || !strings.Contains(log, "secrets withheld (DEPLOY_TOKEN)") {
		t.Errorf("untrusted: outcome %+v, log:\n%s", evs[len(evs)-1].Outcome, log)
	}

	// A secret the bot lacks fails the task as infra, by name.
	missing := h.task(turtles.KindTest, "missing", `echo should not run`)
	missing.Trusted = true
	missing.Secrets = []string{"DEPLOY_TOKEN", "NPM_TOKEN"}
	h.publish(missing)
	evs = h.events(finishedFor(missing.Key()))
	o := evs[len(evs)-1].Outcome
	log = h.log(missing)
	if o.Class != turtles.Infra || !strings.Contains(o.Reason, "secret NPM_TOKEN is not on this bot") ||
		strings.Contains(log, "should not run\n") || !strings.Contains(log, "NPM_TOKEN") {
		t.Errorf("missing secret: outcome %+v, log:\n%s", o, log)
	}
	h.waitIdle()
}
