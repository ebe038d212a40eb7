package state

import (
	"fmt"
	"time"

	"github.com/turtles-ci/turtles"
)

// The history of tasks, attempts and tests: what the JSON API and the
// pages answer from ("what ran for this commit, how did it end, where is
// its log, which tests flake").

// TaskState is where a task is in its life.
type TaskState string

const (
	Queued   TaskState = "queued"
	Running  TaskState = "running"
	Retrying TaskState = "retrying"
	Finished TaskState = "finished"
)

// Task is the record of one task key across its attempts.
type Task struct {
	ID       string           `json:"id"`
	Key      string           `json:"key"`
	Kind     turtles.Kind     `json:"kind"`
	Repo     string           `json:"repo"`
	SHA      string           `json:"sha"`
	Ref      string           `json:"ref,omitempty"`
	PR       int              `json:"pr,omitempty"`
	Context  string           `json:"context"`
	Pool     string           `json:"pool"`
	State    TaskState        `json:"state"`
	Outcome  *turtles.Outcome `json:"outcome,omitempty"`
	LogURL   string           `json:"log_url,omitempty"`
	Created  time.Time        `json:"created"`
	Updated  time.Time        `json:"updated"`
	Attempts []Attempt        `json:"attempts"`
}

// Attempt is one run of a task by a bot.
type Attempt struct {
	Number   int              `json:"number"`
	Bot      string           `json:"bot,omitempty"`
	State    TaskState        `json:"state"`
	Outcome  *turtles.Outcome `json:"outcome,omitempty"`
	LogURL   string           `json:"log_url,omitempty"`
	Started  *time.Time       `json:"started,omitempty"`
	Finished *time.Time       `json:"finished,omitempty"`
}

// Filter selects tasks for List; empty fields match everything, and a
// task matches when it matches every field that is set.
type Filter struct {
	State TaskState
	Repo  string
	// SHA is a commit's hash or the start of one: tasks whose SHA begins
	// with it (compared as text: give it in lower case).
	SHA string
	// Ref is the ref the commit was pushed to ("refs/heads/main") or a
	// pull request's head ref ("refs/pull/7/head"), exactly.
	Ref string
	// PR is a pull request's number; 0 matches pushes and pull requests.
	PR      int
	Context string
	// Class and Verdict match the task's outcome (turtles.VerdictOf); a
	// task without an outcome matches neither.
	Class   turtles.Class
	Verdict turtles.Verdict
	// Since and Until bound Updated: Since <= Updated < Until.
	Since, Until time.Time
	// After continues a listing after the task it names, in List's order
	// (keyset pagination: the page does not shift when tasks are added).
	After *Cursor
	Limit int // default 100, at most 1000
}

// Cursor is a task's place in List's order (most recently updated first,
// then by ID, descending).
type Cursor struct {
	Updated time.Time
	ID      string
}

// CursorOf is t's place in List's order: pass it as Filter.After to list
// the tasks after t.
func CursorOf(t Task) *Cursor { return &Cursor{Updated: t.Updated, ID: t.ID} }

// TestFilter selects tests for Tests and TestRuns; empty fields match
// everything.
type TestFilter struct {
	Repo    string
	Context string
	// Name is a test's name, exactly.
	Name  string
	Since time.Time
	// FlakyOnly keeps tests that were retried-then-passed at least once
	// (a flake counts from the time of the attempt that passed).
	FlakyOnly bool
	Limit     int // Tests: default 500, at most 5000; TestRuns: default 1000, at most 10000
}

// TestRun is one attempt's result of one test: a cell of the test's
// history (TestRuns).
type TestRun struct {
	TaskID   string              `json:"task_id"`
	SHA      string              `json:"sha"`
	Context  string              `json:"context"`
	Attempt  int                 `json:"attempt"`
	Outcome  turtles.TestOutcome `json:"outcome"`
	Duration float64             `json:"duration_seconds,omitempty"`
	Message  string              `json:"message,omitempty"`
	// LogURL links the attempt's log, at the test's line when it came
	// from the log.
	LogURL   string    `json:"log_url,omitempty"`
	Finished time.Time `json:"finished"`
}

// TestStats is the history of one test in one context.
type TestStats struct {
	Repo    string `json:"repo"`
	Context string `json:"context"`
	Name    string `json:"name"`
	// Runs counts attempts that passed or failed the test.
	Runs int `json:"runs"`
	// Tasks counts the tasks (a commit's context) that passed or failed
	// the test, each once, at the first attempt that did (in attempt
	// order): a flake rate is RetriedThenPassed / Tasks.
	Tasks    int `json:"tasks"`
	Failures int `json:"failures"`
	Skipped  int `json:"skipped"`
	// RetriedThenPassed counts commits on which the test failed in one
	// attempt and passed in a later one: flakes.
	RetriedThenPassed int      `json:"retried_then_passed"`
	MeanDuration      float64  `json:"mean_duration_seconds,omitempty"`
	LastFailure       *Failure `json:"last_failure,omitempty"`
}

// Failure points at one failed run of a test.
type Failure struct {
	SHA     string    `json:"sha"`
	Attempt int       `json:"attempt"`
	Time    time.Time `json:"time"`
	Message string    `json:"message,omitempty"`
	// LogURL links the attempt's log, at the line that reported the
	// failure when it came from the log.
	LogURL string `json:"log_url,omitempty"`
}

// IssueFilter selects the known issues KnownIssues counts; empty fields
// match everything.
type IssueFilter struct {
	Repo  string
	Since time.Time
	Limit int // default 100, at most 1000
}

// IssueStats is how often one known issue decided an attempt's verdict
// (turtles.Outcome.Issue): the issues that cost a team most come first.
type IssueStats struct {
	Issue string `json:"issue"`
	Total int    `json:"total"`
	// Weeks counts occurrences per week (UTC, weeks start on Monday),
	// most recent first; weeks without any are left out.
	Weeks []WeekCount `json:"weeks"`
	// Last is the latest occurrence: when, which task, and its reason.
	Last     time.Time `json:"last"`
	LastTask string    `json:"last_task"`
	Reason   string    `json:"reason"`
}

// WeekCount is a count in the week that starts on Week (Monday, 00:00 UTC).
type WeekCount struct {
	Week  time.Time `json:"week"`
	Count int       `json:"count"`
}

// WeekOf returns the start of t's week: Monday, 00:00 UTC.
func WeekOf(t time.Time) time.Time {
	d := t.UTC().Truncate(24 * time.Hour)
	return d.AddDate(0, 0, -((int(d.Weekday()) + 6) % 7))
}

// LostReason is the sentence for people that ends an attempt whose bot
// stopped heart-beating, last heard of at beat.
func LostReason(bot string, beat time.Time) string {
	who := "the bot"
	if bot != "" {
		who = "bot " + bot
	}
	return fmt.Sprintf("%s stopped heart-beating at %s", who, beat.UTC().Format("15:04:05 UTC"))
}

// Bot is what a bot last said of itself in its heartbeat: the "Now" page
// lists bots from it, and a bot whose Seen is older than a few heartbeat
// periods is not alive.
type Bot struct {
	Name    string    `json:"name"`
	Pool    string    `json:"pool"`
	Slots   int       `json:"slots"`
	Busy    int       `json:"busy"`
	Tasks   []string  `json:"tasks,omitempty"` // IDs of the tasks it runs now
	Started time.Time `json:"started"`
	Seen    time.Time `json:"seen"`
	// Every is how often the bot heartbeats: it is alive while it has
	// missed fewer than MissedBeats of them (Alive).
	Every turtles.Duration `json:"every"`
}

// Action is one thing a person did from the dashboard: who, what, when,
// on which task. Every action is recorded and shown on its task.
type Action struct {
	Task   string    `json:"task"` // the task's ID
	Kind   string    `json:"kind"` // "rerun", "cancel", "approve", "requeue"
	User   string    `json:"user"` // the forge login, "github:alice"
	At     time.Time `json:"at"`
	Result string    `json:"result"` // what came of it, for people
}
