package main

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/turtles-ci/turtles/e2e"
	"github.com/turtles-ci/turtles/syncio"
)

func TestPublicURLDefault(t *testing.T) {
	host, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, listen, public string
		want                 string
		derived, hostname    bool
	}{
		{name: "default listen", listen: "localhost:8080", want: "http://localhost:8080", derived: true},
		{name: "specific address", listen: "192.0.2.10:8081", want: "http://192.0.2.10:8081", derived: true},
		{name: "wildcard", listen: ":8081", want: "http://" + net.JoinHostPort(host, "8081"), derived: true, hostname: true},
		{name: "IPv4 wildcard", listen: "0.0.0.0:8081", want: "http://" + net.JoinHostPort(host, "8081"), derived: true, hostname: true},
		{name: "IPv6 wildcard", listen: "[::]:8081", want: "http://" + net.JoinHostPort(host, "8081"), derived: true, hostname: true},
		{name: "given", listen: ":8081", public: "https://ci.example.org/", want: "https://ci.example.org"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := defaults()
			s.Listen, s.PublicURL = tt.listen, tt.public
			s.fill()
			if s.PublicURL != tt.want || s.PublicURLDerived != tt.derived || s.PublicURLHostname != tt.hostname {
				t.Errorf("PublicURL %q (derived %v, host name %v), want %q (%v, %v)",
					s.PublicURL, s.PublicURLDerived, s.PublicURLHostname, tt.want, tt.derived, tt.hostname)
			}
		})
	}
}

func TestSubmitServerURL(t *testing.T) {
	recorded := t.TempDir()
	if err := os.WriteFile(filepath.Join(recorded, publicURLFile), []byte("http://reporter:8081\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		public  string
		dataDir string
		want    string
		ok      bool
	}{
		{name: "given", public: "https://ci.example.org", dataDir: recorded, want: "https://ci.example.org", ok: true},
		{name: "recorded by a server in the data dir", dataDir: recorded, want: "http://reporter:8081", ok: true},
		{name: "unknown: no link", dataDir: t.TempDir()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := defaults()
			s.DataDir, s.PublicURL = tt.dataDir, tt.public
			s.fill()
			got, ok := serverURL(s)
			if got != tt.want || ok != tt.ok {
				t.Errorf("serverURL = %q, %v; want %q, %v", got, ok, tt.want, tt.ok)
			}
		})
	}
}

// TestReporterWarnsOfGuessedPublicURL: a reporter on a wildcard address
// without --public-url says which links it builds and how to change them,
// and a submit in its data dir links to the same server.
func TestReporterWarnsOfGuessedPublicURL(t *testing.T) {
	host, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(e2e.FreeAddr(t))
	data := t.TempDir()
	logs := &syncio.Buffer{}
	cmd := exec.Command(e2e.Bin(t), "reporter", "--data-dir", data, "--listen", ":"+port)
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
	})
	want := "http://" + net.JoinHostPort(host, port)
	e2e.WaitFor(t, 20*time.Second, "the reporter's warning", func() bool {
		return strings.Contains(logs.String(), "log links in statuses and the API use "+want)
	})
	if out := logs.String(); !strings.Contains(out, "level=WARN") || !strings.Contains(out, "--public-url") {
		t.Errorf("the warning does not say how to set the URL:\n%s", out)
	}

	repo := t.TempDir()
	e2e.GitRepo(t, repo, map[string]string{"README": "hi"})
	code, out := runTurtles(t, "submit", "--data-dir", data, "--repo-url", repo, "--sha", "HEAD", "--context", "c", "--command", "true")
	if code != 0 || !strings.Contains(out, want+"/tasks/") {
		t.Errorf("submit: exit %d, want a link under %s:\n%s", code, want, out)
	}
}
