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
}
