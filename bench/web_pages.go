package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jonboulle/clockwork"

	"github.com/turtles-ci/turtles/queue"
	queuesqlite "github.com/turtles-ci/turtles/queue/sqlite"
	"github.com/turtles-ci/turtles/state"
	"github.com/turtles-ci/turtles/state/postgres"
	"github.com/turtles-ci/turtles/state/postgres/pgtest"
	"github.com/turtles-ci/turtles/state/sqlite"
	"github.com/turtles-ci/turtles/store"
	"github.com/turtles-ci/turtles/web"
)

func init() { register("web-pages", webPages) }

// webPages measures the server time of each dashboard page over a
// history of 100,000 tasks and about a million test results
// (web_pages_data.go): every page is asked for many times with varied
// parameters, in process (httptest), and its p95 printed; the value is
// the worst page's p95. It runs on SQLite (what `turtles serve` uses) and,
// when PostgreSQL 15 is installed, on PostgreSQL too.
func webPages(ctx context.Context) error {
	dir, err := os.MkdirTemp("", "turtles-bench-web-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	now := time.Now().Truncate(time.Millisecond)
	data := generate(now)
	fmt.Printf("history: %d tasks, %d attempts, %d test results, over %s\n",
		len(data.tasks.rows), len(data.attempts.rows), data.tests, benchSpan)
	st, err := store.NewDir(filepath.Join(dir, "store"))
	if err != nil {
		return err
	}
	if err := data.storeFiles(ctx, st); err != nil {
		return err
	}
	q, err := queuesqlite.Open(filepath.Join(dir, "queue.db"), queue.Options{Lease: time.Minute, MaxDeliveries: 5,
		Poll: time.Second, Clock: clockwork.NewRealClock()}, nil)
	if err != nil {
		return err
	}
	defer q.Close()

	// Both databases are filled first, then the generated rows let go, so
	// that the collector does not walk them while pages are timed.
	backends := map[string]state.DB{}
	path := filepath.Join(dir, "state.db")
	db, err := sqlite.Open(ctx, path, state.Options{})
	if err != nil {
		return err
	}
	defer db.Close()
	start := time.Now()
	if err := loadSQLite(ctx, path, data); err == nil {
		err = loadResults(ctx, "sqlite", db, data, 1)
	}
	if err != nil {
		return fmt.Errorf("fill the SQLite history: %w", err)
	}
	fmt.Printf("sqlite: filled in %.1f s\n", time.Since(start).Seconds())
	backends["sqlite"] = db
	if _, err := os.Stat("/usr/lib/postgresql/15/bin/postgres"); err != nil {
		fmt.Println("postgres: not installed (scripts/deps.sh installs it); measured on SQLite only")
	} else {
		pg, err := pgtest.Start(pgtest.Options{})
		if err != nil {
			return err
		}
		defer pg.Stop()
		pdb, err := fillPostgres(ctx, pg, data)
		if err != nil {
			return fmt.Errorf("fill the PostgreSQL history: %w", err)
		}
		defer pdb.Close()
		backends["postgres"] = pdb
	}
	data.tasks.rows, data.attempts.rows, data.results = nil, nil, nil
	runtime.GC()

	worst := 0.0
	for _, name := range []string{"sqlite", "postgres"} {
		if backends[name] == nil {
			continue
		}
		p95, err := measurePages(ctx, name, backends[name], st, q, data)
		if err != nil {
			return err
		}
		worst = max(worst, p95)
	}
	result("web-pages", fmt.Sprintf("%.1f", worst), "ms", "< 100")
	return nil
}

// fillPostgres makes a database on pg with the generated history.
func fillPostgres(ctx context.Context, pg *pgtest.Server, data *benchData) (state.DB, error) {
	_, u, err := pg.CreateDatabase(ctx, "")
	if err != nil {
		return nil, err
	}
	db, err := postgres.Open(ctx, u, state.Options{})
	if err != nil {
		return nil, err
	}
	start := time.Now()
	err = loadPostgres(ctx, u, data)
	if err == nil {
		err = loadResults(ctx, "postgres", db, data, 8)
	}
	if err == nil {
		// What autovacuum does soon after a bulk load: the planner's
		// statistics and the visibility map.
		var conn *pgx.Conn
		if conn, err = pgx.Connect(ctx, u); err == nil {
			_, err = conn.Exec(ctx, "VACUUM ANALYZE")
			conn.Close(ctx)
		}
	}
	if err != nil {
		db.Close()
		return nil, err
	}
	fmt.Printf("postgres: filled in %.1f s\n", time.Since(start).Seconds())
	return db, nil
}

// loadSQLite writes the generated tables into the (migrated) file at
// path, many rows per statement, one transaction per table.
func loadSQLite(ctx context.Context, path string, data *benchData) error {
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)")
	if err != nil {
		return err
	}
	defer db.Close()
	start := time.Now()
	for _, tb := range []*benchTable{&data.tasks, &data.attempts} {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		per := 30000 / len(tb.cols)
		for i := 0; i < len(tb.rows); i += per {
			rows := tb.rows[i:min(i+per, len(tb.rows))]
			one := "(" + strings.TrimSuffix(strings.Repeat("?, ", len(tb.cols)), ", ") + ")"
			stmt := fmt.Sprintf("INSERT INTO %s (%s) VALUES %s", tb.name, strings.Join(tb.cols, ", "),
				strings.TrimSuffix(strings.Repeat(one+", ", len(rows)), ", "))
			args := make([]any, 0, len(rows)*len(tb.cols))
			for _, r := range rows {
				args = append(args, r...)
			}
			if _, err := tx.ExecContext(ctx, stmt, args...); err != nil {
				tx.Rollback()
				return fmt.Errorf("insert into %s: %w", tb.name, err)
			}
		}
		if err := tx.Commit(); err != nil {
			return err
		}
		fmt.Printf("sqlite: %d rows into %s after %.1f s\n", len(tb.rows), tb.name, time.Since(start).Seconds())
	}
	return nil
}

// loadPostgres copies the generated tables into the (migrated) database
// at u.
func loadPostgres(ctx context.Context, u string, data *benchData) error {
	conn, err := pgx.Connect(ctx, u)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	for _, tb := range []*benchTable{&data.tasks, &data.attempts} {
		if _, err := conn.CopyFrom(ctx, pgx.Identifier{tb.name}, tb.cols, pgx.CopyFromRows(tb.rows)); err != nil {
			return fmt.Errorf("copy into %s: %w", tb.name, err)
		}
	}
	return nil
}

// loadResults records every attempt's test results as the recorder does,
// from workers goroutines.
func loadResults(ctx context.Context, backend string, db state.DB, data *benchData, workers int) error {
	start := time.Now()
	var wg sync.WaitGroup
	errs := make([]error, workers)
	for w := range workers {
		wg.Go(func() {
			for i := w; i < len(data.results) && errs[w] == nil; i += workers {
				errs[w] = db.RecordTests(ctx, data.results[i])
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	fmt.Printf("%s: %d test results of %d attempts recorded in %.1f s\n", backend, data.tests, len(data.results), time.Since(start).Seconds())
	return nil
}

// benchPage is one page and the addresses it is asked for with; shows
// is in every answer (history: in some), so that what is timed is the
// page with its content, not an empty one.
type benchPage struct {
	name, shows string
	paths       []string
}

// pages lists each page with varied parameters: filters that match much
// and little, deep pages, big and small pull requests.
func pages(ctx context.Context, srv *web.Server, data *benchData) ([]benchPage, error) {
	// Cursors deep into the history, as the API's next links give them.
	var deep []string
	next := ""
	for page := range 95 {
		p := "/api/v1/tasks?limit=1000"
		if next != "" {
			p += "&after=" + url.QueryEscape(next)
		}
		rec := httptest.NewRecorder()
		srv.ServeHTTP(rec, httptest.NewRequest("GET", p, nil).WithContext(ctx))
		var out struct{ Next string }
		if rec.Code != 200 || json.Unmarshal(rec.Body.Bytes(), &out) != nil || out.Next == "" {
			return nil, fmt.Errorf("page %d of the history: %d %.200s", page, rec.Code, rec.Body)
		}
		next = out.Next
		if page%10 == 4 {
			deep = append(deep, "/history?after="+url.QueryEscape(next))
		}
	}
	repo := func(i int) string { return fmt.Sprintf("org/repo-%d", i%benchRepos) }
	var history []string
	for i := range 4 {
		history = append(history,
			"/history",
			"/history?repo="+repo(i),
			"/history?repo="+repo(i)+"&context=unit",
			"/history?context=lint&outcome=cancelled",
			"/history?outcome=failure",
			"/history?verdict=flake",
			"/history?verdict=known-issue&repo="+repo(i),
			"/history?repo="+repo(i)+"&branch=release-1",
			"/history?branch=main&state=finished",
			"/history?sha="+benchSHA(i * 7919)[:6],
			"/history?since=30d&until=20d",
			"/history?since=30d&until=20d&repo="+repo(i)+"&outcome=failure",
			"/history?repo="+data.prs[i].repo+"&pr="+fmt.Sprint(data.prs[i].pr),
		)
	}
	history = append(history, deep...)
	var commits, tests, tasks []string
	for i, c := range data.commits[:40] {
		commits = append(commits, "/commits/"+c[0]+"/"+c[1])
		if i < len(data.prs) {
			p := data.prs[i]
			rec := httptest.NewRecorder()
			srv.ServeHTTP(rec, httptest.NewRequest("GET", fmt.Sprintf("/api/v1/tasks?repo=%s&pr=%d&limit=1", p.repo, p.pr), nil))
			var out struct{ Tasks []state.Task }
			if json.Unmarshal(rec.Body.Bytes(), &out) == nil && len(out.Tasks) == 1 {
				commits = append(commits, "/commits/"+p.repo+"/"+out.Tasks[0].SHA)
			}
		}
	}
	for _, tn := range data.testNames {
		tests = append(tests, "/tests/history?"+url.Values{"repo": {tn[0]}, "name": {tn[1]}}.Encode())
	}
	for _, t := range data.pageTasks[:40] {
		tasks = append(tasks, "/tasks/"+t.ID()+"/1") // the attempt whose files are stored
	}
	return []benchPage{
		{"now", "Running (", []string{"/", "/now"}},
		{"commit", "contexts: ", commits},
		{"history", "<tbody><tr>", history},
		{"flaky tests", "<caption>Flakiest tests", []string{"/tests", "/tests?repo=" + repo(1), "/tests?since=60d", "/tests?context=unit", "/tests?since=1d"}},
		{"test history", `<table class="grid">`, tests},
		{"attempt", "10 passed, 0 failed", tasks},
	}, nil
}

// measurePages times every page's requests on a server over db and
// prints each page's p95; it returns the worst.
func measurePages(ctx context.Context, backend string, db state.DB, st store.Store, q queue.Queue, data *benchData) (float64, error) {
	cfg := web.Config{History: db, Store: st, Queue: q}
	// The bots and the actions, where this state database keeps them
	// (issue 17's monitoring and login add them to state.DB).
	if b, ok := any(db).(interface {
		Bots(ctx context.Context) ([]state.Bot, error)
	}); ok {
		cfg.Bots = b
	}
	if a, ok := any(db).(interface {
		Actions(ctx context.Context, task string) ([]state.Action, error)
	}); ok {
		cfg.Actions = a
	}
	srv := web.New(cfg)
	list, err := pages(ctx, srv, data)
	if err != nil {
		return 0, err
	}
	worst := 0.0
	for _, p := range list {
		// At least 200 timed requests a page; the first round warms
		// caches and is not counted.
		rounds := 1 + max(4, (200+len(p.paths)-1)/len(p.paths))
		var times []float64
		anyShown := false
		for round := range rounds {
			for _, path := range p.paths {
				if ctx.Err() != nil {
					return 0, ctx.Err()
				}
				rec := httptest.NewRecorder()
				req := httptest.NewRequest("GET", path, nil).WithContext(ctx)
				start := time.Now()
				srv.ServeHTTP(rec, req)
				d := time.Since(start)
				if rec.Code != 200 {
					return 0, fmt.Errorf("%s: GET %s = %d: %.300s", backend, path, rec.Code, rec.Body)
				}
				shown := strings.Contains(rec.Body.String(), p.shows)
				if !shown && p.name != "history" {
					return 0, fmt.Errorf("%s: GET %s does not show %q", backend, path, p.shows)
				}
				anyShown = anyShown || shown
				if round > 0 {
					times = append(times, float64(d.Microseconds())/1000)
				}
			}
		}
		if !anyShown {
			return 0, fmt.Errorf("%s: no %s page shows %q", backend, p.name, p.shows)
		}
		slices.Sort(times)
		p95 := times[int(float64(len(times))*0.95)]
		fmt.Printf("%s: %-13s p95 %6.1f ms, p50 %6.1f ms, max %6.1f ms (%d requests, %d addresses)\n",
			backend, p.name, p95, times[len(times)/2], times[len(times)-1], len(times), len(p.paths))
		worst = max(worst, p95)
	}
	return worst, nil
}
