package main

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/turtles-ci/turtles/e2e"
	"github.com/turtles-ci/turtles/queue"
	"github.com/turtles-ci/turtles/queue/amqp"
	"github.com/turtles-ci/turtles/queue/amqp/amqptest"
	"github.com/turtles-ci/turtles/queue/queuetest"
)

// TestHookBrokerOutage: `turtles hook` on a private broker, reached
// through a proxy that takes the broker away, refused (a stopped node)
// or silent (a cut network). A signed webhook during the outage is
// answered 503 within --webhook-publish-timeout (5 s by default, under
// GitHub's 10 s) and is not recorded as handled: once the broker is
// back, the same delivery is answered 2xx and its plan task is queued
// once. The outage is logged once when lost and once when back, not
// once per reconnect try.
func TestHookBrokerOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: starts a RabbitMQ node")
	}
	const bound = 7 * time.Second // the 5 s default and a loaded machine's slack
	broker, err := amqptest.Start(amqptest.Options{Log: t.Logf})
	if err != nil {
		t.Fatalf("start broker: %v", err)
	}
	t.Cleanup(func() { broker.Stop() })
	proxy, err := amqptest.StartProxy(broker.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { proxy.Close() })

	addr := e2e.FreeAddr(t)
	hookP := startProc(t, "hook", "hook", "--data-dir", t.TempDir(), "--listen", addr, "--queue", proxy.URL)
	waitHTTP(t, "http://"+addr+"/metrics")
	url := "http://" + addr + "/hook/github"
	repo := t.TempDir()
	sha := func(i int) string { return fmt.Sprintf("%040x", 0xabc000+i) }
	// A forge gives up after 10 s; so does this one, with status 0.
	client := &http.Client{Timeout: 10 * time.Second}
	deliver := func(i int) (int, time.Duration) {
		body := e2e.PushPayload("octo/hello", repo, sha(i))
		req, _ := http.NewRequest("POST", url, bytes.NewReader(body))
		req.Header.Set("X-GitHub-Event", "push")
		req.Header.Set("X-GitHub-Delivery", fmt.Sprintf("outage-%d", i))
		req.Header.Set("X-Hub-Signature-256", e2e.Sign(body))
		began := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			return 0, time.Since(began)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode, time.Since(began)
	}
	count := func(msg string) int { return strings.Count(hookP.logs.String(), `msg="`+msg) }

	// The topology is declared by a delivery before the outages.
	if code, _ := deliver(0); code != 200 {
		t.Fatalf("delivery before the outages: %d, want 200", code)
	}
	outages := []struct {
		name   string
		outage func()
	}{
		{name: "silent", outage: proxy.Hang},
		{name: "refused", outage: proxy.Down},
	}
	for i, o := range outages {
		o.outage()
		code, took := deliver(i + 1)
		t.Logf("%s broker: webhook answered %d after %s", o.name, code, took.Round(time.Millisecond))
		if code != 503 || took > bound {
			t.Errorf("%s broker: webhook answered %d after %s, want 503 within %s", o.name, code, took, bound)
		}
		proxy.Up()
		// The hook's connection was cut by the outage or by Up; it must
		// be back before the next one.
		e2e.WaitFor(t, 30*time.Second, "the broker connection back", func() bool {
			return count("broker connection back") == i+1
		})
	}

	for i := range outages {
		if code, _ := deliver(i + 1); code != 200 {
			t.Errorf("delivery %d redelivered after the outage: %d, want 200", i+1, code)
		}
		if code, _ := deliver(i + 1); code != 200 {
			t.Errorf("delivery %d redelivered twice: %d, want 200 (already handled)", i+1, code)
		}
	}

	// Every plan task is in the broker once: a sentinel published after
	// them is claimed after them (same priority, first in first out).
	q, err := amqp.Open(amqp.Config{URL: broker.URL, Prefix: brokerPrefix, ParkAfter: parkAfter,
		Options: queue.Options{Lease: time.Minute, MaxDeliveries: 5, Poll: queuePoll, Clock: clockwork.NewRealClock()}})
	if err != nil {
		t.Fatalf("open queue: %v", err)
	}
	defer q.Close()
	sentinel := queuetest.Task(1, "public")
	if err := q.Publish(t.Context(), sentinel); err != nil {
		t.Fatalf("publish sentinel: %v", err)
	}
	queued := map[string]int{}
	for {
		d, err := q.Claim(t.Context(), "public")
		if err != nil {
			t.Fatalf("Claim: %v", err)
		}
		if _, err := d.AckWithTasks(t.Context(), nil, nil); err != nil {
			t.Fatalf("Ack: %v", err)
		}
		if d.Task().Key() == sentinel.Key() {
			break
		}
		queued[d.Task().SHA]++
	}
	for i := range len(outages) + 1 {
		if queued[sha(i)] != 1 {
			t.Errorf("plan task of delivery %d queued %d times, want once (queued: %v)", i, queued[sha(i)], queued)
		}
	}
	if len(queued) != len(outages)+1 {
		t.Errorf("queued %v, want one plan task for each of %d deliveries", queued, len(outages)+1)
	}

	lost, back := count("broker connection lost"), count("broker connection back")
	if lost != len(outages) || back != len(outages) || strings.Contains(hookP.logs.String(), "reconnect failed") {
		t.Errorf("hook logged %d lost and %d back for %d outages of its connection, want one each per outage, and no line per try:\n%s",
			lost, back, len(outages), hookP.logs)
	}
}
