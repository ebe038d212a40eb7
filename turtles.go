// Package turtles holds the domain types that every part of turtles shares:
// the Task a bot runs, the Outcome it ends with, and the Events that carry
// progress from bots to the reporter.
//
// It imports nothing but the standard library; every other package may
// import it. Packages that talk to an external system (queue/sqlite,
// forge/github, store, git) import these types, never the other way round.
package turtles

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"
)

// TaskVersion is the version of the Task JSON encoding. A consumer refuses
// tasks of a version it does not know (they are dead-lettered, not guessed).
const TaskVersion = 1

// PlanContext is the status context of plan tasks: the task that reads
// .turtles.yaml at a commit and enqueues one test task per context.
const PlanContext = "turtles"

// DefaultPool is the pool tasks go to when nothing else is said.
const DefaultPool = "public"

// Kind says what a bot does with a task.
type Kind string

const (
	// KindTest runs one context's command against a checkout.
	KindTest Kind = "test"
	// KindPlan checks out a commit, reads its .turtles.yaml and publishes a
	// KindTest task for each context. It needs no forge credentials.
	KindPlan Kind = "plan"
)

// Repo names a repository and says where to clone it from.
type Repo struct {
	// Name is the forge's full name, "owner/name".
	Name string `json:"name"`
	// CloneURL is anything git can fetch from: https://, http://, file://.
	CloneURL string `json:"clone_url"`
}

// Task is one unit of work: run one context of one commit. It travels as
// versioned JSON through the queue.
type Task struct {
	Version int    `json:"version"`
	Kind    Kind   `json:"kind"`
	Repo    Repo   `json:"repo"`
	SHA     string `json:"sha"`
	// Ref is the branch or tag the commit was pushed to, or the pull
	// request's base branch; informational.
	Ref string `json:"ref,omitempty"`
	// PR is the pull request number, 0 for a push.
	PR int `json:"pr,omitempty"`
	// Base is a pull request's base (target) branch, such as "main";
	// branch rules for pull requests match it. Empty for a push.
	Base string `json:"base,omitempty"`
	// BaseSHA is the commit the change is compared with to find the
	// paths it touches: a pull request's base commit, or the previous
	// head of a pushed branch. Empty when unknown: path filters then do
	// not filter.
	BaseSHA string `json:"base_sha,omitempty"`
	Context string `json:"context"`
	// Command is run with "sh -c" in the checkout. Empty means: look the
	// context up in the checkout's .turtles.yaml.
	Command string   `json:"command,omitempty"`
	Timeout Duration `json:"timeout,omitempty"`
	Pool    string   `json:"pool"`
	// Priority orders tasks within a pool: higher first. 0..9.
	Priority int `json:"priority,omitempty"`
	// Attempt counts runs of this key, 1 for the first. The queue raises
	// it on each redelivery so that every attempt keeps its own log.
	Attempt int `json:"attempt"`
	// Trusted is false for work from people who may not use secrets.
	Trusted bool `json:"trusted"`
	// Secrets are names, resolved by the bot at run time; never values.
	Secrets []string `json:"secrets,omitempty"`
	// Created is when the task was first published.
	Created time.Time `json:"created"`
	// Image names the OS image of a VM to run the command with; empty
	// runs it on the bot alone. Mode says how (ModeGuest by default).
	Image string `json:"image,omitempty"`
	Mode  string `json:"mode,omitempty"`
	// CPUs and MemoryMB size the VM; the bot's defaults when zero.
	CPUs     int `json:"cpus,omitempty"`
	MemoryMB int `json:"memory_mb,omitempty"`
	// Cold boots the VM instead of restoring it from a saved state of its
	// image (a context's warm: false).
	Cold bool `json:"cold,omitempty"`
	// Hold keeps the VM of a failed attempt, memory and disk, beside its
	// log for `turtles debug`: HoldOnFailure, or HoldWithSecrets to hold
	// it even when the task was given secrets. Empty: never held.
	Hold string `json:"hold,omitempty"`
	// Forward lists guest TCP ports forwarded to the bot's loopback.
	Forward []int `json:"forward,omitempty"`
	// Machines, instead of Image, boots several VMs on one private
	// network (a context's machines:); the command runs as Mode says, in
	// the first one or beside them all.
	Machines []Machine `json:"machines,omitempty"`
	// Provider makes a cluster of Machines (a context's cluster:, such as
	// kubernetes, docs/clusters.md); empty: machines and nothing more.
	Provider string `json:"provider,omitempty"`
	// Retries is how many more attempts a test task gets after its tests
	// failed (`retries:` of its context), to tell a flaky test from a
	// regression: a failure on attempt a is retried while a <= Retries,
	// and a pass after a failure is reported as flaky. Infrastructure
	// retries are counted in the same attempts.
	Retries int `json:"retries,omitempty"`
	// Quarantine lists the repository's quarantined tests (globs): a
	// failed attempt whose failed tests all match passes as a flake.
	Quarantine []string `json:"quarantine,omitempty"`
	// Token is the reservation of Key the task was published under
	// (queue.Dedupe): the one live task of a key holds it in the state
	// database until its final event is recorded, which frees it. It
	// travels with the task, and so with every event of the task
	// (including the final events the queue emits for a cancelled or
	// dead-lettered task), so that a late final event of an older run
	// cannot free a newer run's reservation. Empty for a task published
	// without dedupe.
	Token string `json:"token,omitempty"`
}

// Values of Task.Hold (a context's hold:).
const (
	// HoldOnFailure holds a failed attempt's VM unless the task was given
	// secrets: a held machine's memory holds them, unscrubbed.
	HoldOnFailure = "on-failure"
	// HoldWithSecrets holds it even then.
	HoldWithSecrets = "on-failure-with-secrets"
)

// Machine is one of a task's Machines.
type Machine struct {
	// Name is its host name on the run's network; node01.. when empty.
	Name  string `json:"name,omitempty"`
	Image string `json:"image"`
	// CPUs and MemoryMB size it; the bot's defaults when zero.
	CPUs     int   `json:"cpus,omitempty"`
	MemoryMB int   `json:"memory_mb,omitempty"`
	Forward  []int `json:"forward,omitempty"`
}

// VM modes of a task with an Image.
const (
	// ModeGuest copies the checkout into the VM and runs the command there.
	ModeGuest = "guest"
	// ModeHost runs the command on the bot with the VM running beside it,
	// described by TURTLES_VM_* environment variables.
	ModeHost = "host"
)

// Key is the stable identity of a task: the same repo, commit and context
// are the same work, whatever the attempt. Publishing deduplicates on it
// (queue.Dedupe).
func (t Task) Key() string {
	return t.Repo.Name + "@" + t.SHA + ":" + t.Context
}

// ID is a short, URL-safe, stable identifier derived from Key.
func (t Task) ID() string {
	sum := sha256.Sum256([]byte(t.Key()))
	return hex.EncodeToString(sum[:8])
}

// MaxPriority is the highest task priority.
const MaxPriority = 9

// MaxRetries bounds Task.Retries: more than a few retries hide a
// regression behind luck.
const MaxRetries = 5

var (
	shaRe     = regexp.MustCompile(`^[0-9a-f]{40}([0-9a-f]{24})?$`)
	contextRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._/+-]{0,99}$`)
	poolRe    = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)
	repoRe    = regexp.MustCompile(`^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)+$`)
)

// IsSHA reports whether s is a commit ID as turtles takes them: 40 (SHA-1)
// or 64 (SHA-256) lowercase hex digits. It is the one definition of a
// commit ID; the store finds attempts by it.
func IsSHA(s string) bool { return shaRe.MatchString(s) }

// Validate reports the first thing wrong with a task, so that a bad task is
// refused at the door (publish) or dead-lettered (claim), never half-run.
func (t Task) Validate() error {
	switch {
	case t.Version != TaskVersion:
		return fmt.Errorf("task version %d, want %d", t.Version, TaskVersion)
	case t.Kind != KindTest && t.Kind != KindPlan:
		return fmt.Errorf("unknown task kind %q", t.Kind)
	case !repoRe.MatchString(t.Repo.Name) || strings.Contains(t.Repo.Name, ".."):
		return fmt.Errorf("bad repo name %q", t.Repo.Name)
	case t.Repo.CloneURL == "":
		return errors.New("repo has no clone URL")
	case !shaRe.MatchString(t.SHA):
		return fmt.Errorf("bad commit SHA %q: want 40 lowercase hex digits", t.SHA)
	case t.BaseSHA != "" && !shaRe.MatchString(t.BaseSHA):
		return fmt.Errorf("bad base commit SHA %q: want 40 lowercase hex digits", t.BaseSHA)
	case len(t.Base) > 255 || strings.ContainsFunc(t.Base, func(r rune) bool { return r < ' ' || r == 0x7f }):
		return fmt.Errorf("bad base branch %q", t.Base)
	case !contextRe.MatchString(t.Context) || strings.Contains(t.Context, ".."):
		return fmt.Errorf("bad context name %q", t.Context)
	case !poolRe.MatchString(t.Pool):
		return fmt.Errorf("bad pool name %q", t.Pool)
	case t.Priority < 0 || t.Priority > MaxPriority:
		return fmt.Errorf("priority %d out of range 0..%d", t.Priority, MaxPriority)
	case len(t.Quarantine) > 1000:
		return fmt.Errorf("%d quarantined tests, want at most 1000", len(t.Quarantine))
	case t.Retries < 0 || t.Retries > MaxRetries:
		return fmt.Errorf("retries %d out of range 0..%d", t.Retries, MaxRetries)
	case t.Attempt < 1:
		return fmt.Errorf("attempt %d, want >= 1", t.Attempt)
	case t.Timeout < 0:
		return fmt.Errorf("negative timeout %s", t.Timeout)
	case t.Mode != "" && t.Mode != ModeGuest && t.Mode != ModeHost:
		return fmt.Errorf("bad VM mode %q", t.Mode)
	case len(t.Token) > 128:
		return fmt.Errorf("reservation token of %d bytes, want at most 128", len(t.Token))
	case t.CPUs < 0 || t.MemoryMB < 0:
		return fmt.Errorf("negative VM size %d CPUs, %d MiB", t.CPUs, t.MemoryMB)
	case len(t.Machines) > 0 && t.Image != "":
		return errors.New("both an image and machines")
	case t.Provider != "" && len(t.Machines) == 0:
		return fmt.Errorf("cluster provider %q without machines", t.Provider)
	case len(t.Provider) > 32:
		return fmt.Errorf("cluster provider name of %d bytes, want at most 32", len(t.Provider))
	}
	for _, m := range t.Machines {
		if m.Image == "" || m.CPUs < 0 || m.MemoryMB < 0 {
			return fmt.Errorf("machine %q: image %q, %d CPUs, %d MiB", m.Name, m.Image, m.CPUs, m.MemoryMB)
		}
	}
	return nil
}

// DecodeTask parses and validates a task from the queue. An error means the
// message can never be run and belongs on the dead-letter list.
func DecodeTask(b []byte) (Task, error) {
	var t Task
	if err := json.Unmarshal(b, &t); err != nil {
		return Task{}, fmt.Errorf("decode task: %w", err)
	}
	if err := t.Validate(); err != nil {
		return Task{}, fmt.Errorf("invalid task: %w", err)
	}
	return t, nil
}

// Duration is a time.Duration that reads and writes JSON and YAML as a
// string such as "90s" or "2h".
type Duration time.Duration

func (d Duration) String() string { return time.Duration(d).String() }

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// Class is how a task ended. Retries decide on the class.
type Class string

const (
	// Success: the command ran and exited 0.
	Success Class = "success"
	// Failure: the command ran and the tests failed. Not retried.
	Failure Class = "failure"
	// Infra: we failed (checkout, VM, bot). Retried with growing delays.
	Infra Class = "infra"
	// Cancelled: someone or something stopped it (superseded, drain).
	Cancelled Class = "cancelled"
)

// Outcome is the end of one attempt.
type Outcome struct {
	Class Class `json:"class"`
	// ExitCode of the command, -1 when it did not run to an exit.
	ExitCode int `json:"exit_code"`
	// Reason is a short sentence for people, without the class: a status
	// description, the line on a log page (see Fault.Reason). Never an
	// error's text: causes go to the log.
	Reason string `json:"reason,omitempty"`
	// Verdict says why an attempt that did not simply pass ended as it
	// did; empty where the class says it all (VerdictOf fills it in).
	Verdict Verdict `json:"verdict,omitempty"`
	// Issue is the known issue (its URL) whose pattern decided Verdict:
	// known-issue, or infra for a retry pattern. The results database
	// counts occurrences per issue from it (state.DB.KnownIssues).
	Issue string `json:"issue,omitempty"`
}

// Verdict is the triage of an attempt: exactly one per failed attempt,
// shown in the status, the log page, the API and the history.
type Verdict string

const (
	// VerdictInfra: turtles or the machine failed (checkout, image, VM,
	// SSH, a bot that died), or an infrastructure pattern matched.
	VerdictInfra Verdict = "infra"
	// VerdictKnownIssue: a known-issue pattern matched the attempt's
	// log or artifacts (package triage).
	VerdictKnownIssue Verdict = "known-issue"
	// VerdictFlake: the tests failed and then passed on a retry of the
	// same commit (Task.Retries).
	VerdictFlake Verdict = "flake"
	// VerdictRegression: the tests failed and nothing else explains it.
	// Never hidden: a regression is never given another verdict.
	VerdictRegression Verdict = "regression"
)

// VerdictOf returns o's verdict: the one set, else what its class
// implies (infra for Infra, regression for Failure, none otherwise).
func VerdictOf(o Outcome) Verdict {
	switch {
	case o.Verdict != "":
		return o.Verdict
	case o.Class == Infra:
		return VerdictInfra
	case o.Class == Failure:
		return VerdictRegression
	}
	return ""
}

// TestOutcome is how one test of an attempt ended.
type TestOutcome string

const (
	TestPassed  TestOutcome = "passed"
	TestFailed  TestOutcome = "failed"
	TestSkipped TestOutcome = "skipped"
	// TestTodo is a test expected to fail (TAP's # TODO): not a failure.
	TestTodo TestOutcome = "todo"
)

// TestResult is one test of an attempt.
type TestResult struct {
	Name    string      `json:"name"`
	Outcome TestOutcome `json:"outcome"`
	// Duration in seconds; 0 when the test runner did not say.
	Duration float64 `json:"duration_seconds,omitempty"`
	// Line is the 1-based line of the log that reported the test; 0 for
	// results from an artifact.
	Line int `json:"line,omitempty"`
	// Source is "log" or the artifact's name ("artifacts/junit.xml").
	Source string `json:"source"`
	// Message says why, for failures and skips, when known.
	Message string `json:"message,omitempty"`
}

// Artifact is a file an attempt stored under its "artifacts/" prefix.
type Artifact struct {
	// Name is relative to the attempt's prefix: "artifacts/journal.txt".
	Name        string `json:"name"`
	Size        int64  `json:"size"`
	ContentType string `json:"content_type,omitempty"`
}

// Result is what a bot stores as result.json beside the log of an attempt.
type Result struct {
	Task     Task      `json:"task"`
	Outcome  Outcome   `json:"outcome"`
	Bot      string    `json:"bot"`
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished"`
	// Duration in seconds, for people reading the JSON.
	Duration float64 `json:"duration_seconds"`
	LogURL   string  `json:"log_url,omitempty"`
	// Tests are the per-test results found in the log (TAP) and the
	// artifacts (JUnit XML), in the order they were reported.
	Tests []TestResult `json:"tests,omitempty"`
	// Artifacts lists what the attempt stored, so that a page served from
	// the store alone (which cannot list) can link them.
	Artifacts []Artifact `json:"artifacts,omitempty"`
	// Triage lists the known-issue patterns that matched a failed
	// attempt's log or artifacts, with where: the provenance of its
	// verdict (package triage). The first decided the verdict.
	Triage []TriageMatch `json:"triage,omitempty"`
}

// TriageMatch is one known-issue pattern's match in one file of an
// attempt.
type TriageMatch struct {
	Pattern string `json:"pattern"` // the pattern file
	Issue   string `json:"issue"`   // the issue's URL
	Title   string `json:"title,omitempty"`
	Action  string `json:"action"` // known-issue, retry, skip
	// Blocking: a known issue that still fails the status.
	Blocking bool `json:"blocking"`
	// File is "log" or "artifacts/NAME"; Offset the byte offset of the
	// match in it as stored, Line its 1-based line.
	File   string `json:"file"`
	Offset int64  `json:"offset"`
	Line   int    `json:"line"`
	// Lines are the lines matched, scrubbed of secrets.
	Lines []string `json:"lines"`
}

// EventType says what happened to a task.
type EventType string

const (
	// EventQueued: the task was published; the reporter sets "pending".
	EventQueued EventType = "queued"
	// EventStarted: a bot began an attempt.
	EventStarted EventType = "started"
	// EventRetrying: the attempt ended in infra and will be retried.
	EventRetrying EventType = "retrying"
	// EventFinished: the task has its final outcome.
	EventFinished EventType = "finished"
	// EventHeartbeat: a bot still runs the attempt. The recorder keeps the
	// time of the last one, to say when a bot that died was last heard of;
	// the reporter ignores it.
	EventHeartbeat EventType = "heartbeat"
	// EventLost: the queue took the task back from a holder that stopped
	// heart-beating (its lease ran out, or its connection to the broker
	// ended) before the attempt reported an outcome. The holder reports
	// nothing more, so this ends that attempt as infra; the task itself is
	// queued again, so the reporter sets no status. Task.Attempt is the
	// queue's number for the lost delivery: the attempt that ran may have
	// a higher one (a bot renumbers an attempt whose store prefix is
	// taken), which the recorder finds by the attempt still running.
	EventLost EventType = "lost"
	// EventMark is no task's progress: a process that stops emits one
	// after its bot stopped, and handles events until its mark comes
	// back, so that every event before it was handled (a barrier, not a
	// wait). Consumers ack marks and pass them to no handler; Task is
	// empty.
	EventMark EventType = "mark"
)

// Event carries progress from bots and hooks to the reporter and the
// recorder. Bots need no forge credentials: they only emit events.
type Event struct {
	// ID is unique per event; consumers use it to drop duplicates.
	ID   string    `json:"id"`
	Type EventType `json:"type"`
	Task Task      `json:"task"`
	Bot  string    `json:"bot,omitempty"`
	// LogURL is the attempt's page. Bots leave it empty; the process that
	// serves the pages sets it before its handlers see the event, and
	// replaces what older bots put there (report.Linked).
	LogURL  string    `json:"log_url,omitempty"`
	Outcome *Outcome  `json:"outcome,omitempty"`
	Time    time.Time `json:"time"`
}

// A Fault is an error that has been classified where it happened: it
// says how the attempt it stops ends (Class) and why, in words for people
// (Reason), and keeps the error chain that caused it (Err) for the bot's
// log. Code that knows what went wrong returns one (Fail, InfraFault);
// code further up only wraps it with %w for context, and OutcomeOf reads
// the outermost Fault to end the attempt. A layer that can say it better
// for people wraps the error in a Fault of its own.
//
// Only the Reason reaches commit statuses, result.json and log pages; the
// cause may name paths, hosts and internal state, and goes to the log of
// the process that hit it.
type Fault struct {
	// Class is how the attempt ends: Infra when we failed (retried),
	// Failure when the commit is at fault, Cancelled when it was stopped.
	Class Class
	// Reason is one short sentence for the person reading a commit status
	// or a log page, such as "the VM did not boot within 5m0s". It starts
	// in lower case and has no final full stop: the reporter may put words
	// for the class before it ("Infrastructure failure: ..."), and it
	// never says the class itself.
	Reason string
	// Err is the cause, for the log; nil when the reason says it all.
	Err error
}

// Error is the reason and, after a colon, the cause.
func (f *Fault) Error() string {
	switch {
	case f.Err == nil:
		return f.Reason
	case f.Reason == "":
		return f.Err.Error()
	}
	return f.Reason + ": " + f.Err.Error()
}

func (f *Fault) Unwrap() error { return f.Err }

// Fail returns a Fault of class with a reason for people, caused by err
// (nil when there is no further cause).
func Fail(class Class, reason string, err error) error {
	return &Fault{Class: class, Reason: reason, Err: err}
}

// InfraFault returns a Fault of class Infra: we failed, not the tests.
func InfraFault(reason string, err error) error {
	return Fail(Infra, reason, err)
}

// FaultOf returns the outermost Fault in err's chain, if there is one.
func FaultOf(err error) (*Fault, bool) {
	var f *Fault
	if errors.As(err, &f) {
		return f, true
	}
	return nil, false
}

// UnclassifiedReason is the reason given for an error that no Fault
// classifies: a path that failed without saying why in words for people.
// Such an error ends the attempt as Infra (it is retried: the rule is
// that turtles, not the commit, is at fault unless code says otherwise)
// and its cause goes only to the log, never to a status.
const UnclassifiedReason = "turtles hit an unexpected error; the cause is in the bot's log"

// OutcomeOf is the outcome of an attempt that err stopped before it had
// one of its own: the class and reason of err's outermost Fault, or, for
// an error without one, Infra with UnclassifiedReason. err must not be
// nil.
func OutcomeOf(err error) Outcome {
	o := Outcome{Class: Infra, ExitCode: -1, Reason: UnclassifiedReason}
	if f, ok := FaultOf(err); ok {
		if f.Class != "" {
			o.Class = f.Class
		}
		if f.Reason != "" {
			o.Reason = f.Reason
		}
	}
	return o
}
