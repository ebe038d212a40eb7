package sqlite

// migrations[i] takes the schema from version i to i+1. Append only: a
// released migration is never edited. state/postgres has the same tables
// in its own types; a change here needs its twin there.
//
// Times are unix milliseconds.
var migrations = []string{
	`CREATE TABLE deliveries (
		id   TEXT    PRIMARY KEY,
		seen INTEGER NOT NULL
	);
	CREATE INDEX deliveries_seen ON deliveries(seen);

	CREATE TABLE reservations (
		key   TEXT    PRIMARY KEY,
		token TEXT    NOT NULL,
		since INTEGER NOT NULL
	);
	CREATE INDEX reservations_since ON reservations(since, key);

	CREATE TABLE finals (
		key      TEXT    NOT NULL,
		attempt  INTEGER NOT NULL,
		event    TEXT    NOT NULL, -- the winning event, JSON
		recorded INTEGER NOT NULL,
		posted   INTEGER,
		PRIMARY KEY (key, attempt)
	);
	CREATE INDEX finals_unposted ON finals(recorded, key, attempt) WHERE posted IS NULL;
	CREATE INDEX finals_recorded ON finals(recorded);

	CREATE TABLE approvals (
		repo     TEXT    NOT NULL,
		sha      TEXT    NOT NULL,
		pr       INTEGER NOT NULL DEFAULT 0,
		approver TEXT    NOT NULL,
		at       INTEGER NOT NULL,
		PRIMARY KEY (repo, sha)
	);
	CREATE INDEX approvals_at ON approvals(at);

	CREATE TABLE etags (
		key     TEXT    PRIMARY KEY,
		etag    TEXT    NOT NULL,
		updated INTEGER NOT NULL
	);

	CREATE TABLE tasks (
		id        TEXT    PRIMARY KEY,
		key       TEXT    NOT NULL,
		kind      TEXT    NOT NULL,
		repo      TEXT    NOT NULL,
		sha       TEXT    NOT NULL,
		ref       TEXT    NOT NULL DEFAULT '',
		pr        INTEGER NOT NULL DEFAULT 0,
		context   TEXT    NOT NULL,
		pool      TEXT    NOT NULL,
		state     TEXT    NOT NULL,
		class     TEXT    NOT NULL DEFAULT '',
		exit_code INTEGER NOT NULL DEFAULT 0,
		reason    TEXT    NOT NULL DEFAULT '',
		log_url   TEXT    NOT NULL DEFAULT '',
		attempt   INTEGER NOT NULL DEFAULT 0,
		created   INTEGER NOT NULL,
		updated   INTEGER NOT NULL
	);
	CREATE INDEX tasks_repo_sha ON tasks(repo, sha);
	CREATE INDEX tasks_state ON tasks(state, updated);
	CREATE INDEX tasks_updated ON tasks(updated, id);

	CREATE TABLE attempts (
		task_id   TEXT    NOT NULL REFERENCES tasks(id),
		number    INTEGER NOT NULL,
		bot       TEXT    NOT NULL DEFAULT '',
		state     TEXT    NOT NULL,
		class     TEXT    NOT NULL DEFAULT '',
		exit_code INTEGER NOT NULL DEFAULT 0,
		reason    TEXT    NOT NULL DEFAULT '',
		log_url   TEXT    NOT NULL DEFAULT '',
		started   INTEGER,
		finished  INTEGER,
		beat      INTEGER, -- the last heartbeat
		PRIMARY KEY (task_id, number)
	);

	CREATE TABLE events_seen (
		id TEXT    PRIMARY KEY,
		at INTEGER NOT NULL
	);
	CREATE INDEX events_seen_at ON events_seen(at);

	CREATE TABLE test_results (
		task_id  TEXT    NOT NULL,
		attempt  INTEGER NOT NULL,
		repo     TEXT    NOT NULL,
		sha      TEXT    NOT NULL,
		context  TEXT    NOT NULL,
		name     TEXT    NOT NULL,
		outcome  TEXT    NOT NULL,
		duration REAL    NOT NULL DEFAULT 0,
		line     INTEGER NOT NULL DEFAULT 0,
		source   TEXT    NOT NULL DEFAULT '',
		message  TEXT    NOT NULL DEFAULT '',
		log_url  TEXT    NOT NULL DEFAULT '',
		finished INTEGER NOT NULL
	);
	CREATE INDEX test_results_attempt ON test_results(task_id, attempt);
	CREATE INDEX test_results_name ON test_results(repo, context, name, finished);
	CREATE INDEX test_results_finished ON test_results(finished);`,
	// 2: a claim on posting a final, so that of several live reporters
	// exactly one posts it (report.Reporter), and one that died is known;
	// whether a reservation's task was published.
	`ALTER TABLE finals ADD COLUMN poster TEXT NOT NULL DEFAULT '';
	ALTER TABLE finals ADD COLUMN claimed_until INTEGER NOT NULL DEFAULT 0;

	-- 1 once the reservation's task is published (Settle).
	ALTER TABLE reservations ADD COLUMN settled INTEGER NOT NULL DEFAULT 0;
	CREATE INDEX reservations_unsettled ON reservations(since, key) WHERE settled = 0;

	-- The verdict of each attempt and task (turtles.Verdict).
	ALTER TABLE tasks ADD COLUMN verdict TEXT NOT NULL DEFAULT '';
	ALTER TABLE attempts ADD COLUMN verdict TEXT NOT NULL DEFAULT '';`,
	// 3: which known issue decided an attempt's verdict, counted per week
	// (KnownIssues).
	`CREATE TABLE issue_hits (
		task_id TEXT    NOT NULL,
		number  INTEGER NOT NULL,
		issue   TEXT    NOT NULL,
		repo    TEXT    NOT NULL,
		context TEXT    NOT NULL,
		reason  TEXT    NOT NULL DEFAULT '',
		at      INTEGER NOT NULL,
		PRIMARY KEY (task_id, number)
	);
	CREATE INDEX issue_hits_at ON issue_hits(at);
	CREATE INDEX issue_hits_repo ON issue_hits(repo, at);`,
	// 4: what each bot last said of itself (state.Bot), for the pages
	// and the count of live bots per pool on /metrics.
	`-- issue 17: monitoring
	CREATE TABLE bots (
		name    TEXT    PRIMARY KEY,
		pool    TEXT    NOT NULL,
		slots   INTEGER NOT NULL,
		busy    INTEGER NOT NULL,
		tasks   TEXT    NOT NULL DEFAULT '[]', -- IDs of the tasks it runs, JSON
		started INTEGER NOT NULL,
		seen    INTEGER NOT NULL,
		every   INTEGER NOT NULL -- its heartbeat period, milliseconds
	);
	CREATE INDEX bots_seen ON bots(seen);`,
	// 5: what people did from the dashboard (state.Action), shown on
	// the task.
	`-- issue 17: login
	CREATE TABLE actions (
		id     INTEGER PRIMARY KEY AUTOINCREMENT,
		task   TEXT    NOT NULL, -- the task's ID
		kind   TEXT    NOT NULL,
		actor  TEXT    NOT NULL, -- state.Action.User ("user" is reserved in PostgreSQL)
		at     INTEGER NOT NULL,
		result TEXT    NOT NULL DEFAULT ''
	);
	CREATE INDEX actions_task ON actions(task, at, id);
	CREATE INDEX actions_at ON actions(at);`,
	// 6: search and paging of the history; a test's history; flakes.
	`-- issue 17: pages
	-- An index per filter of List, each ending with (updated, id): List's
	-- order and its cursor, so that any page of a search is a range scan.
	DROP INDEX tasks_state;
	CREATE INDEX tasks_state ON tasks(state, updated, id);
	CREATE INDEX tasks_repo ON tasks(repo, updated, id);
	CREATE INDEX tasks_repo_pr ON tasks(repo, pr, updated, id);
	CREATE INDEX tasks_context ON tasks(context, updated, id);
	CREATE INDEX tasks_class ON tasks(class, updated, id);
	CREATE INDEX tasks_verdict ON tasks(verdict, updated, id);
	CREATE INDEX tasks_sha ON tasks(sha);

	-- A test's results by test and time (a test's runs, the part of a day
	-- its stats read from the results), and its failures apart (the last
	-- failure of each test).
	DROP INDEX test_results_name;
	CREATE INDEX test_results_test ON test_results(repo, name, finished);
	CREATE INDEX test_results_failed ON test_results(repo, name, context, finished) WHERE outcome = 'failed';

	-- A test that an attempt of a task failed and a later attempt passed,
	-- timed by the first pass: the flakes, kept apart since they are rare
	-- and the flakiest tests are asked for often.
	CREATE TABLE test_flakes (
		task_id  TEXT    NOT NULL,
		repo     TEXT    NOT NULL,
		sha      TEXT    NOT NULL,
		context  TEXT    NOT NULL,
		name     TEXT    NOT NULL,
		finished INTEGER NOT NULL,
		PRIMARY KEY (task_id, name)
	);
	CREATE INDEX test_flakes_name ON test_flakes(repo, context, name, finished);
	CREATE INDEX test_flakes_finished ON test_flakes(finished);
	INSERT INTO test_flakes (task_id, repo, sha, context, name, finished)
		SELECT p.task_id, p.repo, p.sha, p.context, p.name, MIN(p.finished)
		FROM test_results p
		WHERE p.outcome = 'passed' AND p.attempt > 1 AND EXISTS (SELECT 1 FROM test_results f
			WHERE f.task_id = p.task_id AND f.name = p.name AND f.attempt < p.attempt AND f.outcome = 'failed')
		GROUP BY p.task_id, p.repo, p.sha, p.context, p.name;

	-- Each test's results per day (UTC; day = finished / 86400000), so
	-- that a test's stats over weeks read a row a day, not every result.
	-- tasks counts the tasks whose first pass or failure of the test (in
	-- attempt order) was that day; dur_sum and dur_n the durations known.
	CREATE TABLE test_days (
		repo     TEXT    NOT NULL,
		name     TEXT    NOT NULL,
		context  TEXT    NOT NULL,
		day      INTEGER NOT NULL,
		runs     INTEGER NOT NULL DEFAULT 0,
		failures INTEGER NOT NULL DEFAULT 0,
		skipped  INTEGER NOT NULL DEFAULT 0,
		tasks    INTEGER NOT NULL DEFAULT 0,
		dur_sum  REAL    NOT NULL DEFAULT 0,
		dur_n    INTEGER NOT NULL DEFAULT 0,
		PRIMARY KEY (repo, name, context, day)
	);
	INSERT INTO test_days (repo, name, context, day, runs, failures, skipped, tasks, dur_sum, dur_n)
		SELECT r.repo, r.name, r.context, r.finished / 86400000,
			SUM(CASE WHEN r.outcome IN ('passed', 'failed') THEN 1 ELSE 0 END),
			SUM(CASE WHEN r.outcome = 'failed' THEN 1 ELSE 0 END),
			SUM(CASE WHEN r.outcome = 'skipped' THEN 1 ELSE 0 END),
			SUM(CASE WHEN r.outcome IN ('passed', 'failed') AND NOT EXISTS (SELECT 1 FROM test_results e
				WHERE e.task_id = r.task_id AND e.name = r.name AND e.attempt < r.attempt AND e.outcome IN ('passed', 'failed'))
				THEN 1 ELSE 0 END),
			SUM(CASE WHEN r.duration > 0 THEN r.duration ELSE 0 END),
			SUM(CASE WHEN r.duration > 0 THEN 1 ELSE 0 END)
		FROM test_results r
		GROUP BY r.repo, r.name, r.context, r.finished / 86400000;`,
}
