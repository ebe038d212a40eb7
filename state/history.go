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

// Filter selects tasks for List; empty fields match everything.
type Filter struct {
	State TaskState
	Repo  string
	SHA   string
	Limit int // default 100, at most 1000
}

// TestFilter selects tests for Tests; empty fields match everything.
type TestFilter struct {
	Repo    string
	Context string
	Since   time.Time
	// FlakyOnly keeps tests that were retried-then-passed at least once.
	FlakyOnly bool
	Limit     int // default 500, at most 5000
}

// TestStats is the history of one test in one context.
type TestStats struct {
	Repo    string `json:"repo"`
	Context string `json:"context"`
	Name    string `json:"name"`
	// Runs counts attempts that passed or failed the test.
	Runs     int `json:"runs"`
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
