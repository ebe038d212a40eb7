// Package statetest is the contract suite of state.DB: every backend
// passes the same tests, including the races of several handles (as
// several processes would hold) on one database.
//
// Only the tests of state backends import it.
package statetest

import (
	"sync"
	"testing"
	"time"

	"github.com/turtles-ci/turtles"
	"github.com/turtles-ci/turtles/state"
)

// Open opens a new handle on one database, as another process would. It
// may be called from any goroutine.
type Open func(opts state.Options) (state.DB, error)

// Fresh makes a database for t with nothing in it (no schema, or the
// schema alone: a backend may copy a migrated template) and returns how
// to open it.
type Fresh func(t *testing.T) Open

// Run runs the contract suite, each test on a database of its own made
// by fresh. The suite closes the handles it opens.
func Run(t *testing.T, fresh Fresh) {
	tests := []struct {
		name string
		fn   func(t *testing.T, o opener)
	}{
		{"Deliveries", testDeliveries},
		{"DeliveriesPrune", testDeliveriesPrune},
		{"DeliveriesRace", testDeliveriesRace},
		{"Reserve", testReserve},
		{"ReserveInvalid", testReserveInvalid},
		{"Reservations", testReservations},
		{"ReserveRace", testReserveRace},
		{"ReserveChurn", testReserveChurn},
		{"Finals", testFinals},
		{"FinalsPosted", testFinalsPosted},
		{"FinalsRace", testFinalsRace},
		{"FinalsPrune", testFinalsPrune},
		{"Approvals", testApprovals},
		{"ETags", testETags},
		{"Record", testRecord},
		{"RecordRace", testRecordRace},
		{"RecordConcurrentEvents", testRecordConcurrentEvents},
		{"FinalsClaim", testFinalsClaim},
		{"Settle", testSettle},
		{"ListAndGet", testListAndGet},
		{"ListFilters", testListFilters},
		{"ListPages", testListPages},
		{"TestRuns", testTestRuns},
		{"FlakesAnyOrder", testFlakesAnyOrder},
		{"TestStatsDays", testTestStatsDays},
		{"Verdicts", testVerdicts},
		{"KnownIssues", testKnownIssues},
		{"Lost", testLost},
		{"Tests", testTests},
		{"TestsRace", testTestsRace},
		{"PruneHistory", testPruneHistory},
		{"Bots", testBots},
		{"BotsPrune", testBotsPrune},
		{"BotsRace", testBotsRace},
		{"ConcurrentOpen", testConcurrentOpen},
		{"Reopen", testReopen},
		{"Closed", testClosed},
		{"Actions", testActions},
		{"ActionsOrder", testActionsOrder},
		{"ActionsPrune", testActionsPrune},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			open := fresh(t)
			tt.fn(t, opener{open: open})
		})
	}
}

// opener opens handles on one test's database, closing them when the
// test ends.
type opener struct{ open Open }

func (o opener) handle(t *testing.T, opts state.Options) state.DB {
	t.Helper()
	db, err := o.open(opts)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// db opens a handle with the real clock.
func (o opener) db(t *testing.T) state.DB { return o.handle(t, state.Options{}) }

// handles opens n handles.
func (o opener) handles(t *testing.T, n int, opts state.Options) []state.DB {
	dbs := make([]state.DB, n)
	for i := range dbs {
		dbs[i] = o.handle(t, opts)
	}
	return dbs
}

// Clock is a fake clock for state.Options.Now.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// NewClock returns a clock stopped at t.
func NewClock(t time.Time) *Clock { return &Clock{now: t} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock on by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// t0 is the fake clocks' start: a time with no sub-millisecond part,
// since the backends keep milliseconds.
var t0 = time.Date(2024, 5, 1, 16, 2, 0, 0, time.UTC)

// Task returns a valid test task of context ctx at attempt.
func Task(ctx string, attempt int) turtles.Task {
	return turtles.Task{
		Version: turtles.TaskVersion, Kind: turtles.KindTest,
		Repo: turtles.Repo{Name: "octo/hello", CloneURL: "file:///x"},
		SHA:  "0123456789abcdef0123456789abcdef01234567", Context: ctx, Pool: "public", Attempt: attempt,
	}
}

// race runs f(i) for i in [0, n) at once, after all n goroutines are
// ready, and waits for them.
func race(n int, f func(i int)) {
	var ready, done sync.WaitGroup
	start := make(chan struct{})
	ready.Add(n)
	done.Add(n)
	for i := range n {
		go func() {
			defer done.Done()
			ready.Done()
			<-start
			f(i)
		}()
	}
	ready.Wait()
	close(start)
	done.Wait()
}
