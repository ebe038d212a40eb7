package main

// The monitoring end to end: a real Prometheus (Debian's package) scrapes
// a running `turtles serve` with the rules of deploy/prometheus, while a
// `turtles bot` of another pool shares serve's queue and state database;
// the bot is killed, and the "no bot alive" alert fires for its pool.

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/turtles-ci/turtles/e2e"
	"github.com/turtles-ci/turtles/forge/github/githubtest"
	"github.com/turtles-ci/turtles/syncio"
)

const rulesFile = "../../deploy/prometheus/turtles.rules.yml"

func TestPrometheusNoBotAlive(t *testing.T) {
	prom, err := exec.LookPath("prometheus")
	if err != nil {
		if testing.Short() {
			t.Skip("-short: prometheus not installed (Debian package prometheus; scripts/deps.sh)")
		}
		t.Fatal("prometheus not installed: run scripts/deps.sh (Debian package prometheus)")
	}
	gh := githubtest.NewServer(t, e2e.Token)
	repo := t.TempDir()
	e2e.GitRepo(t, repo, map[string]string{".turtles.yaml": "contexts:\n  - name: unit\n    command: echo fine\n"})
	data := t.TempDir()
	s := e2e.Serve(t, gh, data, "--bot-name", "serve-bot", "--bot-heartbeat", "200ms")
	// Another pool's bot, its own process on serve's queue and database.
	bot := startProc(t, "bot", "bot", "--data-dir", data, "--work-dir", t.TempDir(), "--pool", "e2e", "--slots", "1",
		"--bot-name", "e2e-bot", "--bot-heartbeat", "200ms", "--log-format", "json")

	p := startPrometheus(t, prom, s.URL)
	p.waitQuery(t, "the e2e bot alive in Prometheus", `turtles_pool_bots_alive{pool="e2e"}`, "1")
	p.waitQuery(t, "serve's bot alive in Prometheus", `turtles_pool_bots_alive{pool="public"}`, "1")

	// Tasks run in pool public: their queue wait reaches the SLO's rules.
	// Two, one after the other: rate() sees no increase in a series'
	// first sample, and the first may be created with its first start.
	for i, name := range []string{"unit", "unit2"} {
		if code, out := runTurtles(t, "submit", "--data-dir", data, "--repo-url", repo, "--sha", "HEAD", "--repo", "octo/hello",
			"--context", name, "--command", "echo fine"); code != 0 {
			t.Fatalf("submit: %d %s", code, out)
		}
		p.waitQuery(t, "the task's end in Prometheus", `sum(turtles_tasks_finished_total{pool="public",class="success",verdict="none"})`, strconv.Itoa(i+1))
	}
	p.waitQuery(t, "the SLO's ratio of slow starts", `turtles:queue_wait_slow:ratio_rate5m{pool="public"}`, "0")
	if alerts := p.alerts(t); len(alerts) != 0 {
		t.Fatalf("alerts with every bot alive: %+v", alerts)
	}
	// Every panel's query of the dashboard is PromQL this Prometheus
	// runs, with Grafana's variables as Grafana would fill them.
	grafana := strings.NewReplacer("$__rate_interval", "1m", "$__range", "5m", "$pool", ".*")
	for where, expr := range dashboardExprs(t, filepath.Join(dashboardsDir, "turtles.json")) {
		if strings.HasPrefix(where, "variable ") {
			continue // label_values() is Grafana's, not PromQL
		}
		var data json.RawMessage
		if err := p.try("/api/v1/query?query="+url.QueryEscape(grafana.Replace(expr)), &data); err != nil {
			t.Errorf("dashboard panel %s: %q: %v", where, expr, err)
		}
	}

	killed := time.Now()
	bot.kill()
	var firing []promAlert
	e2e.WaitFor(t, 40*time.Second, "TurtlesNoBotAlive to fire for pool e2e", func() bool {
		firing = nil
		for _, a := range p.alerts(t) {
			if a.State == "firing" {
				firing = append(firing, a)
			}
		}
		return len(firing) > 0
	})
	t.Logf("TurtlesNoBotAlive fired %s after the bot was killed", time.Since(killed).Round(100*time.Millisecond))
	// In the same evaluation, pool public (serve's bot) did not fire.
	if len(firing) != 1 || firing[0].Labels["alertname"] != "TurtlesNoBotAlive" || firing[0].Labels["pool"] != "e2e" ||
		firing[0].Labels["severity"] != "page" {
		t.Errorf("firing alerts: %+v, want TurtlesNoBotAlive for pool e2e alone", firing)
	}

	// The bot logged JSON, one record a line, for a log collector.
	sc := bufio.NewScanner(strings.NewReader(bot.logs.String()))
	lines := 0
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "=== start ") {
			continue
		}
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil || rec["msg"] == nil || rec["level"] == nil {
			t.Errorf("bot --log-format json wrote a line that is no JSON record: %q", line)
		}
		lines++
	}
	if lines == 0 {
		t.Error("the bot logged nothing")
	}
}

// promServer is a private Prometheus server.
type promServer struct {
	url string
}

// startPrometheus starts Prometheus on a free port and a private data
// directory, scraping target every second and evaluating the rules of
// deploy/prometheus every second, with TurtlesNoBotAlive's `for:` cut to
// 0s: the rules' unit tests (promtool) test the durations; this tests
// that the alert's expression fires on what turtles exports.
func startPrometheus(t *testing.T, bin, target string) *promServer {
	t.Helper()
	dir := t.TempDir()
	rules := shortenFor(t, "TurtlesNoBotAlive")
	if err := os.WriteFile(filepath.Join(dir, "turtles.rules.yml"), rules, 0o644); err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files: [turtles.rules.yml]
scrape_configs:
  - job_name: turtles
    static_configs:
      - targets: [%q]
`, u.Host)
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := e2e.FreeAddr(t)
	cmd := exec.Command(bin, "--config.file", filepath.Join(dir, "prometheus.yml"), "--storage.tsdb.path", filepath.Join(dir, "data"),
		"--web.listen-address", addr, "--web.console.templates", dir, "--web.console.libraries", dir)
	logs := &syncio.Buffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGKILL)
		<-done
		if t.Failed() {
			t.Logf("prometheus output (last 4000 bytes):\n%s", tail(logs.String(), 4000))
		}
	})
	p := &promServer{url: "http://" + addr}
	e2e.WaitFor(t, 20*time.Second, "prometheus ready", func() bool {
		resp, err := http.Get(p.url + "/-/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	return p
}

// shortenFor returns the rules of deploy/prometheus with alert's for: 0s.
func shortenFor(t *testing.T, alert string) []byte {
	t.Helper()
	b, err := os.ReadFile(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, g := range doc["groups"].([]any) {
		for _, r := range g.(map[string]any)["rules"].([]any) {
			if rule := r.(map[string]any); rule["alert"] == alert {
				rule["for"], found = "0s", true
			}
		}
	}
	if !found {
		t.Fatalf("%s has no alert %s", rulesFile, alert)
	}
	out, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// get decodes the data of a Prometheus API answer into v.
func (p *promServer) get(t *testing.T, path string, v any) {
	t.Helper()
	if err := p.try(path, v); err != nil {
		t.Fatal(err)
	}
}

// try decodes the data of a Prometheus API answer into v, or returns
// why it cannot.
func (p *promServer) try(path string, v any) error {
	resp, err := http.Get(p.url + path)
	if err != nil {
		return fmt.Errorf("prometheus %s: %w", path, err)
	}
	defer resp.Body.Close()
	var body struct {
		Status string          `json:"status"`
		Data   json.RawMessage `json:"data"`
		Error  string          `json:"error"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || body.Status != "success" {
		return fmt.Errorf("prometheus %s: %s %v %s", path, resp.Status, err, body.Error)
	}
	return json.Unmarshal(body.Data, v)
}

// waitQuery waits until the instant query q has one sample of value want.
func (p *promServer) waitQuery(t *testing.T, what, q, want string) {
	t.Helper()
	var last string
	e2e.WaitFor(t, 40*time.Second, what, func() bool {
		var data struct {
			Result []struct {
				Value [2]any `json:"value"`
			} `json:"result"`
		}
		p.get(t, "/api/v1/query?query="+url.QueryEscape(q), &data)
		last = fmt.Sprint(data.Result)
		if len(data.Result) != 1 {
			return false
		}
		got, _ := data.Result[0].Value[1].(string)
		g, err1 := strconv.ParseFloat(got, 64)
		w, err2 := strconv.ParseFloat(want, 64)
		return err1 == nil && err2 == nil && g == w
	})
	t.Logf("%s: %s = %s (last answer %s)", what, q, want, last)
}

// promAlert is an alert of /api/v1/alerts, pending or firing.
type promAlert struct {
	Labels map[string]string `json:"labels"`
	State  string            `json:"state"`
}

func (p *promServer) alerts(t *testing.T) []promAlert {
	t.Helper()
	var data struct {
		Alerts []promAlert `json:"alerts"`
	}
	p.get(t, "/api/v1/alerts", &data)
	return data.Alerts
}
