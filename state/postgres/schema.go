package postgres

// migrations[i] takes the schema from version i to i+1. Append only: a
// released migration is never edited. state/sqlite has the same tables in
// its own types; a change here needs its twin there.
//
// Times are unix milliseconds (BIGINT). Text compares bytewise (COLLATE
// "C"), as in SQLite, so that both backends order alike.
var migrations = []string{
	`CREATE TABLE deliveries (
		id        TEXT COLLATE "C" PRIMARY KEY,
		seen      BIGINT NOT NULL
	);
	CREATE INDEX deliveries_seen ON deliveries(seen);

	CREATE TABLE reservations (
		key       TEXT COLLATE "C" PRIMARY KEY,
		token     TEXT COLLATE "C" NOT NULL,
		since     BIGINT NOT NULL
	);
	CREATE INDEX reservations_since ON reservations(since, key);

	CREATE TABLE finals (
		key       TEXT COLLATE "C" NOT NULL,
		attempt   INTEGER NOT NULL,
		event     TEXT COLLATE "C" NOT NULL, -- the winning event, JSON
		recorded  BIGINT NOT NULL,
		posted    BIGINT,
		PRIMARY KEY (key, attempt)
	);
	CREATE INDEX finals_unposted ON finals(recorded, key, attempt) WHERE posted IS NULL;
	CREATE INDEX finals_recorded ON finals(recorded);

	CREATE TABLE approvals (
		repo      TEXT COLLATE "C" NOT NULL,
		sha       TEXT COLLATE "C" NOT NULL,
		pr        INTEGER NOT NULL DEFAULT 0,
		approver  TEXT COLLATE "C" NOT NULL,
		at        BIGINT NOT NULL,
		PRIMARY KEY (repo, sha)
	);
	CREATE INDEX approvals_at ON approvals(at);

	CREATE TABLE etags (
		key       TEXT COLLATE "C" PRIMARY KEY,
		etag      TEXT COLLATE "C" NOT NULL,
		updated   BIGINT NOT NULL
	);

	CREATE TABLE tasks (
		id        TEXT COLLATE "C" PRIMARY KEY,
		key       TEXT COLLATE "C" NOT NULL,
		kind      TEXT COLLATE "C" NOT NULL,
		repo      TEXT COLLATE "C" NOT NULL,
		sha       TEXT COLLATE "C" NOT NULL,
		ref       TEXT COLLATE "C" NOT NULL DEFAULT '',
		pr        INTEGER NOT NULL DEFAULT 0,
		context   TEXT COLLATE "C" NOT NULL,
		pool      TEXT COLLATE "C" NOT NULL,
		state     TEXT COLLATE "C" NOT NULL,
		class     TEXT COLLATE "C" NOT NULL DEFAULT '',
		exit_code INTEGER NOT NULL DEFAULT 0,
		reason    TEXT COLLATE "C" NOT NULL DEFAULT '',
		log_url   TEXT COLLATE "C" NOT NULL DEFAULT '',
		attempt   INTEGER NOT NULL DEFAULT 0,
		created   BIGINT NOT NULL,
		updated   BIGINT NOT NULL
	);
	CREATE INDEX tasks_repo_sha ON tasks(repo, sha);
	CREATE INDEX tasks_state ON tasks(state, updated);
	CREATE INDEX tasks_updated ON tasks(updated, id);

	CREATE TABLE attempts (
		task_id   TEXT COLLATE "C" NOT NULL REFERENCES tasks(id),
		number    INTEGER NOT NULL,
		bot       TEXT COLLATE "C" NOT NULL DEFAULT '',
		state     TEXT COLLATE "C" NOT NULL,
		class     TEXT COLLATE "C" NOT NULL DEFAULT '',
		exit_code INTEGER NOT NULL DEFAULT 0,
		reason    TEXT COLLATE "C" NOT NULL DEFAULT '',
		log_url   TEXT COLLATE "C" NOT NULL DEFAULT '',
		started   BIGINT,
		finished  BIGINT,
		beat      BIGINT, -- the last heartbeat
		PRIMARY KEY (task_id, number)
	);

	CREATE TABLE events_seen (
		id        TEXT COLLATE "C" PRIMARY KEY,
		at        BIGINT NOT NULL
	);
	CREATE INDEX events_seen_at ON events_seen(at);

	CREATE TABLE test_results (
		task_id   TEXT COLLATE "C" NOT NULL,
		attempt   INTEGER NOT NULL,
		repo      TEXT COLLATE "C" NOT NULL,
		sha       TEXT COLLATE "C" NOT NULL,
		context   TEXT COLLATE "C" NOT NULL,
		name      TEXT COLLATE "C" NOT NULL,
		outcome   TEXT COLLATE "C" NOT NULL,
		duration  DOUBLE PRECISION NOT NULL DEFAULT 0,
		line      INTEGER NOT NULL DEFAULT 0,
		source    TEXT COLLATE "C" NOT NULL DEFAULT '',
		message   TEXT COLLATE "C" NOT NULL DEFAULT '',
		log_url   TEXT COLLATE "C" NOT NULL DEFAULT '',
		finished  BIGINT NOT NULL
	);
	CREATE INDEX test_results_attempt ON test_results(task_id, attempt);
	CREATE INDEX test_results_name ON test_results(repo, context, name, finished);
	CREATE INDEX test_results_finished ON test_results(finished);`,
	// 2: a claim on posting a final, so that of several live reporters
	// exactly one posts it (report.Reporter), and one that died is known;
	// whether a reservation's task was published.
	`ALTER TABLE finals ADD COLUMN poster TEXT COLLATE "C" NOT NULL DEFAULT '';
	ALTER TABLE finals ADD COLUMN claimed_until BIGINT NOT NULL DEFAULT 0;

	-- 1 once the reservation's task is published (Settle).
	ALTER TABLE reservations ADD COLUMN settled INTEGER NOT NULL DEFAULT 0;
	CREATE INDEX reservations_unsettled ON reservations(since, key) WHERE settled = 0;

	-- The verdict of each attempt and task (turtles.Verdict).
	ALTER TABLE tasks ADD COLUMN verdict TEXT COLLATE "C" NOT NULL DEFAULT '';
	ALTER TABLE attempts ADD COLUMN verdict TEXT COLLATE "C" NOT NULL DEFAULT '';`,
	// 3: which known issue decided an attempt's verdict, counted per week
	// (KnownIssues).
	`CREATE TABLE issue_hits (
		task_id TEXT COLLATE "C"    NOT NULL,
		number  INTEGER NOT NULL,
		issue   TEXT COLLATE "C"    NOT NULL,
		repo    TEXT COLLATE "C"    NOT NULL,
		context TEXT COLLATE "C"    NOT NULL,
		reason  TEXT COLLATE "C"    NOT NULL DEFAULT '',
		at      BIGINT NOT NULL,
		PRIMARY KEY (task_id, number)
	);
	CREATE INDEX issue_hits_at ON issue_hits(at);
	CREATE INDEX issue_hits_repo ON issue_hits(repo, at);`,
	// 4: what each bot last said of itself (state.Bot), for the pages
	// and the count of live bots per pool on /metrics.
	`-- issue 17: monitoring
	CREATE TABLE bots (
		name      TEXT COLLATE "C" PRIMARY KEY,
		pool      TEXT COLLATE "C" NOT NULL,
		slots     INTEGER NOT NULL,
		busy      INTEGER NOT NULL,
		tasks     TEXT COLLATE "C" NOT NULL DEFAULT '[]', -- IDs of the tasks it runs, JSON
		started   BIGINT NOT NULL,
		seen      BIGINT NOT NULL,
		every     BIGINT NOT NULL -- its heartbeat period, milliseconds
	);
	CREATE INDEX bots_seen ON bots(seen);`,
	// 5: what people did from the dashboard (state.Action), shown on
	// the task.
	`-- issue 17: login
	CREATE TABLE actions (
		id        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
		task      TEXT COLLATE "C" NOT NULL, -- the task's ID
		kind      TEXT COLLATE "C" NOT NULL,
		actor     TEXT COLLATE "C" NOT NULL, -- state.Action.User ("user" is reserved)
		at        BIGINT NOT NULL,
		result    TEXT COLLATE "C" NOT NULL DEFAULT ''
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
		task_id   TEXT COLLATE "C" NOT NULL,
		repo      TEXT COLLATE "C" NOT NULL,
		sha       TEXT COLLATE "C" NOT NULL,
		context   TEXT COLLATE "C" NOT NULL,
		name      TEXT COLLATE "C" NOT NULL,
		finished  BIGINT NOT NULL,
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
		repo      TEXT COLLATE "C" NOT NULL,
		name      TEXT COLLATE "C" NOT NULL,
		context   TEXT COLLATE "C" NOT NULL,
		day       BIGINT NOT NULL,
		runs      BIGINT NOT NULL DEFAULT 0,
		failures  BIGINT NOT NULL DEFAULT 0,
		skipped   BIGINT NOT NULL DEFAULT 0,
		tasks     BIGINT NOT NULL DEFAULT 0,
		dur_sum   DOUBLE PRECISION NOT NULL DEFAULT 0,
		dur_n     BIGINT NOT NULL DEFAULT 0,
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
