package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/turtles-ci/turtles"
	"github.com/turtles-ci/turtles/bot"
	"github.com/turtles-ci/turtles/queue"
	"github.com/turtles-ci/turtles/queue/sqlite"
	"github.com/turtles-ci/turtles/store"
	"github.com/turtles-ci/turtles/store/s3"
	"github.com/turtles-ci/turtles/store/s3/s3test"
)

func init() {
	register("log-latency", logLatency)
	register("log-overhead", logOverhead)
}

// logEnv is a git repository, a queue and a work directory for running
// real tasks through a real bot.
type logEnv struct {
	dir, repo, sha string
}

func newLogEnv() (*logEnv, error) {
	dir, err := os.MkdirTemp("", "turtles-bench-logs-")
	if err != nil {
		return nil, err
	}
	e := &logEnv{dir: dir, repo: filepath.Join(dir, "repo")}
	os.MkdirAll(e.repo, 0o755)
	os.WriteFile(filepath.Join(e.repo, "README"), []byte("bench\n"), 0o644)
	for _, args := range [][]string{{"init", "-q"}, {"add", "."}, {"-c", "user.name=b", "-c", "user.email=b@x", "commit", "-q", "-m", "x"}} {
		if out, err := exec.Command("git", append([]string{"-C", e.repo}, args...)...).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("git %v: %v: %s", args, err, out)
		}
	}
	out, err := exec.Command("git", "-C", e.repo, "rev-parse", "HEAD").Output()
	if err != nil {
		return nil, err
	}
	e.sha = strings.TrimSpace(string(out))
	return e, nil
}

func (e *logEnv) Close() { os.RemoveAll(e.dir) }

// run runs command as one test task through a bot that logs to st, and
// returns the time from publishing the task to its ack. onStart is called
// with the task once the bot is running.
func (e *logEnv) run(ctx context.Context, st store.Store, name, command string, onStart func(turtles.Task)) (time.Duration, error) {
	qdir, err := os.MkdirTemp(e.dir, "q-")
	if err != nil {
		return 0, err
	}
	db, err := sqlite.Open(filepath.Join(qdir, "queue.db"), queue.Options{Lease: time.Minute, MaxDeliveries: 5, Poll: 5 * time.Millisecond, Clock: clockwork.NewRealClock()}, nil)
	if err != nil {
		return 0, err
	}
	defer db.Close()
	work := filepath.Join(qdir, "work")
	b, err := bot.New(bot.Config{Name: "bench", Queue: db, Events: db, Store: st, WorkDir: work,
		Pool: turtles.DefaultPool, Slots: 1, Heartbeat: 10 * time.Second, Clock: clockwork.NewRealClock(),
		RetryDelays: []time.Duration{time.Second}, MaxDeliveries: 5, KillGrace: 10 * time.Second,
		VM: bot.VMConfig{Dir: filepath.Join(work, "vms"), CPUs: benchCPUs, MemoryMB: benchMemoryMB,
			BootTimeout: benchBootTimeout, StopGrace: benchStopGrace, QEMU: benchQEMU}})
	if err != nil {
		return 0, err
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- b.Run(runCtx, runCtx) }()
	defer func() { stop(); <-done }()
	t := turtles.Task{Version: turtles.TaskVersion, Kind: turtles.KindTest, Repo: turtles.Repo{Name: "bench/logs", CloneURL: "file://" + e.repo},
		SHA: e.sha, Context: name, Command: command, Pool: turtles.DefaultPool, Attempt: 1, Trusted: true, Created: time.Now()}
	start := time.Now()
	if err := db.Publish(ctx, t); err != nil {
		return 0, err
	}
	if onStart != nil {
		onStart(t)
	}
	for {
		stats, err := db.Stats(ctx)
		if err != nil {
			return 0, err
		}
		n := 0
		for _, s := range stats {
			if s.State == "dead" {
				return 0, errors.New("task dead-lettered")
			}
			n += s.Count
		}
		if n == 0 {
			return time.Since(start), nil
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// liveReader reads an attempt's log as the viewer does: the chunks the
// index names while it exists (each fetched once), else the whole log.
type liveReader struct {
	st     store.Store
	key    string
	chunks [][]byte
}

func (r *liveReader) get(ctx context.Context, k string) ([]byte, error) {
	rc, _, err := r.st.Get(ctx, k)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

func (r *liveReader) read(ctx context.Context) ([]byte, error) {
	idxData, err := r.get(ctx, store.ChunkIndexKey(r.key))
	if err == nil {
		var idx store.ChunkIndex
		if json.Unmarshal(idxData, &idx) == nil {
			for i := len(r.chunks); i < len(idx.Offsets); i++ {
				c, err := r.get(ctx, store.ChunkKey(r.key, i+1))
				if err != nil {
					break // gone: the whole log is there
				}
				r.chunks = append(r.chunks, c)
			}
			return bytes.Join(r.chunks, nil), nil
		}
	}
	return r.get(ctx, r.key)
}

// logLatency prints a timestamped line every 100 ms from a task and polls
// the store for it as a viewer would, every 50 ms.
func logLatency(ctx context.Context) error {
	e, err := newLogEnv()
	if err != nil {
		return err
	}
	defer e.Close()
	stores, closeStores, err := benchStores(ctx, e.dir)
	if err != nil {
		return err
	}
	defer closeStores()
	const lines = 100
	command := fmt.Sprintf(`for i in $(seq 1 %d); do echo "LAT $(date +%%s%%N)"; sleep 0.1; done`, lines)
	worst := 0.0
	for _, s := range stores {
		var lat []time.Duration
		seen := map[string]bool{}
		var rd *liveReader
		scan := func(data []byte) {
			now := time.Now()
			for _, l := range strings.Split(string(data), "\n") {
				v, ok := strings.CutPrefix(l, "LAT ")
				if !ok || seen[v] {
					continue
				}
				seen[v] = true
				if ns, err := strconv.ParseInt(v, 10, 64); err == nil {
					lat = append(lat, now.Sub(time.Unix(0, ns)))
				}
			}
		}
		pollCtx, stopPoll := context.WithCancel(ctx)
		polled := make(chan struct{})
		_, err := e.run(ctx, s.st, "latency-"+s.name, command, func(t turtles.Task) {
			rd = &liveReader{st: s.st, key: store.AttemptPrefix(t) + store.LogName}
			go func() {
				defer close(polled)
				for pollCtx.Err() == nil {
					data, _ := rd.read(pollCtx)
					scan(data)
					time.Sleep(50 * time.Millisecond)
				}
			}()
		})
		stopPoll()
		<-polled
		if err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
		// Lines that only the final log brought count too, late as they are.
		data, _ := rd.read(ctx)
		scan(data)
		if len(lat) != lines {
			return fmt.Errorf("%s: saw %d of %d lines", s.name, len(lat), lines)
		}
		sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
		p50, p99 := lat[len(lat)/2], lat[len(lat)*99/100]
		fmt.Printf("log-latency %s store: p50 %d ms, p99 %d ms (%d lines)\n", s.name, p50.Milliseconds(), p99.Milliseconds(), len(lat))
		worst = max(worst, float64(p99.Milliseconds()))
	}
	result("log-latency", fmt.Sprintf("%.0f", worst), "ms", "< 2000")
	return nil
}

// logOverhead runs a task printing 100 MB through a real bot, with each
// store, with log streaming off (the baseline: the bot stores the log once
// when the task ends) and on (live log, then the final log), alternating,
// seven runs each; the result compares the best runs (noise only adds
// time), the medians are printed beside. The command alone, writing to a
// file, is shown for scale.
func logOverhead(ctx context.Context) error {
	e, err := newLogEnv()
	if err != nil {
		return err
	}
	defer e.Close()
	stores, closeStores, err := benchStores(ctx, e.dir)
	if err != nil {
		return err
	}
	defer closeStores()
	command := `yes 'turtles log overhead: one line of test output, about eighty bytes long.' | head -c 100000000`
	const rounds = 7
	off, on := map[string][]time.Duration{}, map[string][]time.Duration{}
	var bare time.Duration
	for round := 0; round < rounds; round++ {
		start := time.Now()
		c := exec.CommandContext(ctx, "sh", "-c", command+" > "+filepath.Join(e.dir, "bare.log"))
		if out, err := c.CombinedOutput(); err != nil {
			return fmt.Errorf("bare command: %v: %s", err, out)
		}
		if d := time.Since(start); bare == 0 || d < bare {
			bare = d
		}
		for _, s := range stores {
			d, err := e.run(ctx, bot.FinalLogOnly(s.st), fmt.Sprintf("overhead-%s-off-%d", s.name, round), command, nil)
			if err != nil {
				return fmt.Errorf("%s without streaming: %w", s.name, err)
			}
			off[s.name] = append(off[s.name], d)
			d, err = e.run(ctx, s.st, fmt.Sprintf("overhead-%s-on-%d", s.name, round), command, nil)
			if err != nil {
				return fmt.Errorf("%s: %w", s.name, err)
			}
			on[s.name] = append(on[s.name], d)
		}
	}
	fmt.Printf("log-overhead: the command alone, into a file: %.2f s\n", bare.Seconds())
	worst := -100.0
	for _, s := range stores {
		onBest, onMed := bestMedian(on[s.name])
		offBest, offMed := bestMedian(off[s.name])
		pct := (onBest.Seconds() - offBest.Seconds()) / offBest.Seconds() * 100
		fmt.Printf("log-overhead %s store: best %.2f s streaming against %.2f s without streaming: %+.1f %% (medians %.2f s, %.2f s: %+.1f %%)\n",
			s.name, onBest.Seconds(), offBest.Seconds(), pct, onMed.Seconds(), offMed.Seconds(), (onMed.Seconds()-offMed.Seconds())/offMed.Seconds()*100)
		worst = max(worst, pct)
	}
	result("log-overhead", fmt.Sprintf("%.1f", worst), "%", "< 5")
	return nil
}

// bestMedian returns the shortest and the median of ds.
func bestMedian(ds []time.Duration) (best, median time.Duration) {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[0], s[len(s)/2]
}

type benchStore struct {
	name string
	st   store.Store
}

// benchStores are the stores the log benchmarks compare: the local
// directory and versitygw on loopback.
func benchStores(ctx context.Context, dir string) ([]benchStore, func(), error) {
	d, err := store.NewDir(filepath.Join(dir, "store"))
	if err != nil {
		return nil, nil, err
	}
	vdir := filepath.Join(dir, "versitygw")
	os.MkdirAll(vdir, 0o755)
	srv, err := s3test.Versity(ctx, vdir)
	if err != nil {
		return nil, nil, err
	}
	bucket, err := srv.CreateBucket(ctx)
	if err != nil {
		srv.Close()
		return nil, nil, err
	}
	s3st, err := s3.New(srv.Config(bucket, "bench"))
	if err != nil {
		srv.Close()
		return nil, nil, err
	}
	return []benchStore{{"local", d}, {"versitygw", s3st}}, srv.Close, nil
}
