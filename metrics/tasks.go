package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/turtles-ci/turtles"
)

// QueueWaitBuckets are the upper bounds of turtles_queue_wait_seconds.
// 300 s is one of them, so that the SLO "95 % of tasks start within 5
// minutes" reads exactly from the histogram (docs/monitoring.md).
var QueueWaitBuckets = []float64{1, 5, 15, 30, 60, 120, 180, 240, 300, 450, 600, 900, 1800, 3600, 7200}

// SLOWait is the queue wait of the SLO, in seconds: a bucket bound of
// QueueWaitBuckets.
const SLOWait = 300

// Tasks are the metrics of tasks' lives, read from their events where the
// events are recorded (results.Recorder, in `turtles serve` and the
// reporter): so they count every bot's work in distributed mode too,
// where bots serve no /metrics.
type Tasks struct {
	wait     *prometheus.HistogramVec
	finished *prometheus.CounterVec
	attempts *prometheus.CounterVec
}

// NewTasks returns the task metrics, registered with reg (shared with
// earlier registrations, see Register); nil reg registers nothing.
func NewTasks(reg prometheus.Registerer) (*Tasks, error) {
	m := &Tasks{
		wait: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "turtles_queue_wait_seconds",
			Help:    "Time from a task's publish to the start of its first attempt, by pool.",
			Buckets: QueueWaitBuckets,
		}, []string{"pool"}),
		finished: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "turtles_tasks_finished_total",
			Help: "Tasks that ended (their final status), by pool, outcome class and verdict (none when the class says it all).",
		}, []string{"pool", "class", "verdict"}),
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "turtles_task_attempts_total",
			Help: "Task attempts that ended, by pool and outcome class: final ones, those to be retried, and those lost with their bot (infra).",
		}, []string{"pool", "class"}),
	}
	if reg == nil {
		return m, nil
	}
	var err error
	if m.wait, err = Register(reg, m.wait); err != nil {
		return nil, err
	}
	if m.finished, err = Register(reg, m.finished); err != nil {
		return nil, err
	}
	if m.attempts, err = Register(reg, m.attempts); err != nil {
		return nil, err
	}
	return m, nil
}

// Observe counts ev. Call it once per event (the recorder calls it for
// events it records for the first time), so that a redelivered event is
// not counted twice.
func (m *Tasks) Observe(ev turtles.Event) {
	pool := ev.Task.Pool
	switch ev.Type {
	case turtles.EventQueued:
		// The pool's histogram exists, at 0, before its first start:
		// Prometheus's rate() sees an increase only from a sample it
		// scraped before.
		m.wait.WithLabelValues(pool)
	case turtles.EventStarted:
		// The first attempt's start: later attempts waited for a retry
		// delay on purpose. A drained task released unstarted runs
		// again as a later attempt (its prefix is taken), so it is
		// counted once.
		if ev.Task.Attempt != 1 || ev.Task.Created.IsZero() || ev.Time.IsZero() {
			return
		}
		m.wait.WithLabelValues(pool).Observe(max(ev.Time.Sub(ev.Task.Created), 0).Seconds())
	case turtles.EventFinished:
		if ev.Outcome == nil {
			return
		}
		class := classLabel(ev.Outcome.Class)
		m.finished.WithLabelValues(pool, class, verdictLabel(turtles.VerdictOf(*ev.Outcome))).Inc()
		m.attempts.WithLabelValues(pool, class).Inc()
	case turtles.EventRetrying:
		if ev.Outcome == nil {
			return
		}
		m.attempts.WithLabelValues(pool, classLabel(ev.Outcome.Class)).Inc()
	case turtles.EventLost:
		m.attempts.WithLabelValues(pool, string(turtles.Infra)).Inc()
	}
}

// classLabel is c, or "other" for a class turtles does not know, so that
// no event mints label values.
func classLabel(c turtles.Class) string {
	switch c {
	case turtles.Success, turtles.Failure, turtles.Infra, turtles.Cancelled:
		return string(c)
	}
	return "other"
}

// verdictLabel is v, "none" for no verdict, or "other".
func verdictLabel(v turtles.Verdict) string {
	switch v {
	case "":
		return "none"
	case turtles.VerdictInfra, turtles.VerdictKnownIssue, turtles.VerdictFlake, turtles.VerdictRegression:
		return string(v)
	}
	return "other"
}
