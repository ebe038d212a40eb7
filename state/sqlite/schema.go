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
}
