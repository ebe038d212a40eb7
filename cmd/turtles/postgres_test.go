package main

// The distributed mode's state in PostgreSQL: the real binary as
// separate processes on a private PostgreSQL server (pgtest) and RabbitMQ
// node (amqptest), and the errors a wrong --database gives at start.

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/turtles-ci/turtles"
	"github.com/turtles-ci/turtles/e2e"
	"github.com/turtles-ci/turtles/forge/github/githubtest"
	"github.com/turtles-ci/turtles/queue/amqp/amqptest"
	"github.com/turtles-ci/turtles/state"
	"github.com/turtles-ci/turtles/state/postgres"
	"github.com/turtles-ci/turtles/state/postgres/pgtest"
)

// TestDatabaseErrorsAtStart: a --database that is unreachable, or not a
// database URL, stops a process at start with a message naming the
// server, never the password.
func TestDatabaseErrorsAtStart(t *testing.T) {
	const password = "s3cretPassw0rd"
	// A port nobody listens on: taken, then let go.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	unreachable := fmt.Sprintf("postgres://turtles:%s@127.0.0.1:%d/turtles", password, port)
	tests := []struct {
		name     string
		args     []string
		want     []string
		password string
	}{
		{name: "hook, unreachable", args: []string{"hook", "--database", unreachable},
			want: []string{"PostgreSQL at 127.0.0.1:" + strconv.Itoa(port), `database "turtles"`, "state database unavailable"}},
		{name: "reporter, unreachable", args: []string{"reporter", "--database", unreachable},
			want: []string{"PostgreSQL at 127.0.0.1:" + strconv.Itoa(port)}},
		{name: "not a URL it knows", args: []string{"serve", "--database", "mysql://root:" + password + "@db/turtles"},
			want: []string{"database: want a file or a postgres:// URL, got a mysql URL"}},
		{name: "a URL that does not parse", args: []string{"hook", "--database", "postgres://turtles:" + password + "@127.0.0.1:notaport/x"},
			want: []string{"database: bad database URL (not shown: it may hold a password)"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append(tt.args, "--data-dir", t.TempDir(), "--listen", e2e.FreeAddr(t))
			began := time.Now()
			code, out := runTurtles(t, args...)
			if code == 0 {
				t.Fatalf("turtles %s started: %s", tt.args[0], out)
			}
			for _, w := range tt.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			if strings.Contains(out, password) {
				t.Errorf("output shows the password:\n%s", out)
			}
			if d := time.Since(began); d > 20*time.Second {
				t.Errorf("took %s to fail", d)
			}
		})
	}
}

// TestPostgres: hook, reporter and bot as separate processes, two hooks
// and two reporters on one PostgreSQL database. A push delivered to both
// hooks queues one set of tasks; each task gets exactly one final status
// at the forge; both reporters' APIs show the same history. While the
// database is down, a webhook is answered 503; once it is back, the
// forge's redelivery is accepted and its tasks run.
func TestPostgres(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: starts PostgreSQL and a RabbitMQ node")
	}
	pg, err := pgtest.Start(pgtest.Options{Log: t.Logf})
	if err != nil {
		t.Fatalf("start PostgreSQL: %v", err)
	}
	t.Cleanup(func() { pg.Stop() })
	broker, err := amqptest.Start(amqptest.Options{Log: t.Logf})
	if err != nil {
		t.Fatalf("start broker: %v", err)
	}
	t.Cleanup(func() { broker.Stop() })
	gh := githubtest.NewServer(t, e2e.Token)
	database := pg.NewDatabase(t)

	contexts := []string{"unit", "lint", "docs"}
	yaml := "contexts:\n"
	for _, c := range contexts {
		yaml += fmt.Sprintf("  - name: %s\n    command: echo %s ok\n", c, c)
	}
	repo := t.TempDir()
	sha1 := e2e.GitRepo(t, repo, map[string]string{".turtles.yaml": yaml})
	sha2 := e2e.GitRepo(t, repo, map[string]string{".turtles.yaml": yaml, "second": "yes"})

	store := t.TempDir()
	common := []string{"--queue", broker.URL, "--database", database, "--log-level", "debug", "--lease", "5s"}
	var hooks, reporters []string
	var procs []*proc
	for i := range 2 {
		addr := e2e.FreeAddr(t)
		hooks = append(hooks, addr)
		procs = append(procs, startProc(t, fmt.Sprintf("hook-%d", i), append([]string{"hook", "--data-dir", t.TempDir(), "--listen", addr}, common...)...))
	}
	for i := range 2 {
		addr := e2e.FreeAddr(t)
		reporters = append(reporters, addr)
		procs = append(procs, startProc(t, fmt.Sprintf("reporter-%d", i), append([]string{"reporter", "--data-dir", t.TempDir(), "--listen", addr,
			"--github-api", gh.URL + "/", "--store-dir", store}, common...)...))
	}
	procs = append(procs, startProc(t, "bot", "bot", "--database", database, "--data-dir", t.TempDir(), "--bot-name", "bot-0", "--slots", "2",
		"--retry-delays", "200ms", "--store-dir", store, "--queue", broker.URL, "--log-level", "debug", "--lease", "5s"))
	for _, h := range hooks {
		waitHTTP(t, "http://"+h+"/metrics")
	}
	for _, r := range reporters {
		waitHTTP(t, "http://"+r+"/healthz")
	}

	// The same delivery to both hooks, as a load balancer may send a
	// forge's redelivery: the second knows it from the database.
	push1 := e2e.PushPayload("octo/hello", repo, sha1)
	for i, h := range hooks {
		if code := postWebhook(t, "http://"+h+"/hook/github", "push-1", push1); code != 200 {
			t.Fatalf("push to hook %d: %d, want 200", i, code)
		}
	}
	if m := metricsOf(t, hooks[1]); !strings.Contains(m, `result="duplicate"} 1`) {
		t.Errorf("hook 1 did not answer the delivery as a duplicate; its metrics:\n%s", m)
	}
	e2e.WaitFinal(t, gh, "octo/hello", sha1, 120*time.Second, contexts...)
	// A reporter marks a final posted just after the forge took it; the
	// database going away in between would have it posted again (the
	// documented duplicate of a crash there), which is not this test's.
	db, err := postgres.Open(t.Context(), database, state.Options{})
	if err != nil {
		t.Fatal(err)
	}
	e2e.WaitFor(t, 30*time.Second, "the finals marked posted", func() bool {
		left, err := db.Unposted(t.Context(), 0)
		return err == nil && len(left) == 0
	})
	db.Close()

	// The database goes away: a webhook is answered 503, not recorded.
	if err := pg.Down(); err != nil {
		t.Fatal(err)
	}
	push2 := e2e.PushPayload("octo/hello", repo, sha2)
	if code := postWebhook(t, "http://"+hooks[0]+"/hook/github", "push-2", push2); code != 503 {
		t.Errorf("push while the database is down: %d, want 503", code)
	}
	if err := pg.Up(); err != nil {
		t.Fatal(err)
	}
	// The forge sends it again, to the other hook this time.
	e2e.WaitFor(t, 30*time.Second, "the redelivery accepted", func() bool {
		return postWebhook(t, "http://"+hooks[1]+"/hook/github", "push-2", push2) == 200
	})
	e2e.WaitFinal(t, gh, "octo/hello", sha2, 120*time.Second, contexts...)

	// Barrier for late duplicates: a task submitted after everything
	// above, whose final status comes after any status they would set.
	sha3 := e2e.GitRepo(t, repo, map[string]string{"barrier": "yes"})
	if code, out := runTurtles(t, "submit", "--queue", broker.URL, "--database", database, "--data-dir", t.TempDir(), "--repo-url", repo, "--sha", sha3,
		"--repo", "octo/hello", "--context", "barrier", "--command", "true"); code != 0 {
		t.Fatalf("submit: exit %d: %s", code, out)
	}
	e2e.WaitFinal(t, gh, "octo/hello", sha3, 120*time.Second, "barrier")

	t.Run("exactly one final status per task attempt", func(t *testing.T) {
		count := map[string]int{}
		plans := map[string]int{}
		for _, st := range gh.Statuses() {
			switch {
			case st.State == "pending":
			case st.Context == turtles.PlanContext:
				// A plan speaks up on success only to clear a red
				// status; a plan retried after the database outage
				// may post a needless green one (report.Reporter).
				plans[st.SHA[:8]]++
				if st.State != "success" {
					t.Errorf("the plan of %.8s: %s %q", st.SHA, st.State, st.Description)
				}
			default:
				count[st.SHA[:8]+" "+st.Context]++
			}
		}
		for sha, n := range plans {
			if n > 1 {
				t.Errorf("the plan of %s has %d final statuses, want at most 1", sha, n)
			}
		}
		want := map[string]int{sha3[:8] + " barrier": 1}
		for _, sha := range []string{sha1, sha2} {
			for _, c := range contexts {
				want[sha[:8]+" "+c] = 1
			}
		}
		if diff := cmp.Diff(want, count); diff != "" {
			t.Errorf("final statuses per task (-want +got):\n%s", diff)
		}
	})
	t.Run("every reporter shows the same history", func(t *testing.T) {
		var first []state.Task
		for i, r := range reporters {
			var all []state.Task
			for _, sha := range []string{sha1, sha2} {
				tasks, err := fetchTasks(t.Context(), "http://"+r+"/api/v1/tasks?sha="+sha)
				if err != nil {
					t.Fatal(err)
				}
				n := 0
				for _, x := range tasks {
					if x.Context == "turtles" {
						continue
					}
					n++
					if x.State != state.Finished || x.Outcome == nil || x.Outcome.Class != "success" || len(x.Attempts) != 1 {
						t.Errorf("reporter %d: %s %s: %s %+v with %d attempts, want finished, success, 1 attempt",
							i, sha[:8], x.Context, x.State, x.Outcome, len(x.Attempts))
					}
				}
				if n != len(contexts) {
					t.Errorf("reporter %d: %d test tasks of %s, want %d", i, n, sha[:8], len(contexts))
				}
				all = append(all, tasks...)
			}
			if i == 0 {
				first = all
			} else if diff := cmp.Diff(first, all); diff != "" {
				t.Errorf("reporter %d's history differs from reporter 0's (-0 +%d):\n%s", i, i, diff)
			}
		}
	})
	for _, p := range procs {
		if out := p.logs.String(); strings.Contains(out, pg.Password) {
			t.Errorf("%s logged the database password", p.name)
		}
	}
}

func metricsOf(t *testing.T, addr string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}
