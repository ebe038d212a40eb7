package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/turtles-ci/turtles/bot"
	"github.com/turtles-ci/turtles/forge"
	"github.com/turtles-ci/turtles/gate"
	"github.com/turtles-ci/turtles/health"
	"github.com/turtles-ci/turtles/hook"
	"github.com/turtles-ci/turtles/queue"
	"github.com/turtles-ci/turtles/report"
	"github.com/turtles-ci/turtles/results"
	"github.com/turtles-ci/turtles/scan"
	"github.com/turtles-ci/turtles/state"
	"github.com/turtles-ci/turtles/store"
)

// system holds the parts of one turtles process, wired once and one way
// for every command, as tailscale's tsd.System holds a node's. Each part
// is a typed field whose Get panics, naming the part, when the process
// never set it: a command says which parts it needs (openSystem), and one
// that cannot be built is an error at start, not a nil check later. run
// starts what was built and stops it in one order (lifecycle.go).
type system struct {
	s   Settings
	log *slog.Logger
	reg *registry

	// Queue is the queue backend behind the dedupe of task keys in State
	// (queue.Dedupe): the broker dedupes nothing.
	Queue  part[queue.Queue]
	Events part[queue.Events]
	// Inbox carries what needs forge lookups from the webhook receiver
	// to the gate, in the process that holds the forge token.
	Inbox part[queue.Inbox]
	// State is the state database (state.go): the delivery log, the
	// history the pages and the API show, the reporter's finals.
	State      part[state.DB]
	Deliveries part[hook.DeliveryLog]
	Store      part[store.Store]
	// Results records events in the state's history.
	Results  part[*results.Recorder]
	Forge    part[forge.Forge]
	Gate     part[*gate.Gate]
	Reporter part[*report.Reporter]
	Scanner  part[*scan.Scanner]
	Bot      part[*bot.Bot]
	Receiver part[receiver]
	HTTP     part[httpServer]
	// beats records the bot's heartbeats for its /healthz
	// (--health-listen, health.go); nil without.
	beats *health.Beats

	closers []func() error // in the order opened; Close runs them backwards
}

// part is one part of a system.
type part[T any] struct {
	name string
	v    T
	set  bool
	why  string // why the process has no such part, when it cannot
}

// Set sets the part.
func (p *part[T]) Set(v T) { p.v, p.set = v, true }

// Get returns the part; it panics if the part was never set, which is a
// bug in the wiring: the command did not ask for it.
func (p *part[T]) Get() T {
	if !p.set {
		panic(fmt.Sprintf("turtles: part %s was never set", p.name))
	}
	return p.v
}

// GetOK returns the part and whether it is set, for parts a process may
// lack (the gate without forge credentials, the scanner without
// --scan-repos).
func (p *part[T]) GetOK() (T, bool) { return p.v, p.set }

func (p *part[T]) isSet() bool { return p.set }

// absent records why the process has no such part.
func (p *part[T]) absent(why string) { p.why = why }

// partID names a part, for what commands need.
type partID int

// The parts, in the order they are built: each only from those before.
const (
	partState partID = iota
	partQueue
	partEvents
	partInbox
	partDeliveries
	partStore
	partResults
	partForge
	partGate
	partReporter
	partScanner
	partBot
	partReceiver
	partHTTP
	numParts
)

// deps are the parts each part is built from (beyond optional ones it
// uses when they are there: the receiver the inbox, HTTP the others).
var deps = map[partID][]partID{
	// The queue dedupes task keys in the state database (queue.Dedupe).
	partQueue:      {partState},
	partEvents:     {partQueue},
	partInbox:      {partQueue},
	partDeliveries: {partState},
	partResults:    {partStore, partState},
	partGate:       {partForge, partQueue, partEvents},
	partReporter:   {partForge, partState},
	partScanner:    {partGate, partQueue, partEvents},
	partBot:        {partState, partQueue, partEvents, partStore},
	partReceiver:   {partQueue, partDeliveries},
}

// spec is what a command needs of a system.
type spec struct {
	// need: parts that must be there; one that cannot be built is an
	// error at start.
	need []partID
	// may: parts built where the settings allow, and run if built.
	may []partID
}

// anyPart is a part of any type.
type anyPart interface {
	partName() string
	isSet() bool
	absence() string
}

func (p *part[T]) partName() string { return p.name }
func (p *part[T]) absence() string  { return cmp.Or(p.why, "not built") }

// parts are the system's parts by ID.
func (sys *system) parts() [numParts]anyPart {
	return [numParts]anyPart{&sys.State, &sys.Queue, &sys.Events, &sys.Inbox, &sys.Deliveries, &sys.Store, &sys.Results,
		&sys.Forge, &sys.Gate, &sys.Reporter, &sys.Scanner, &sys.Bot, &sys.Receiver, &sys.HTTP}
}

// builders build the parts by ID; nil for parts another one's builder
// sets (one queue backend is the queue, the events and the inbox).
func (sys *system) builders() [numParts]func() error {
	return [numParts]func() error{sys.openState, sys.openQueue, nil, nil, sys.openDeliveries, sys.openStore, sys.openResults,
		sys.openForge, sys.openGate, sys.openReporter, sys.openScanner, sys.openBot, sys.openReceiver, sys.openHTTP}
}

func newSystem(s Settings, log *slog.Logger) *system {
	reg := &registry{Registry: prometheus.NewRegistry()}
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	sys := &system{s: s, log: log, reg: reg}
	sys.Queue.name, sys.Events.name, sys.Inbox.name, sys.Deliveries.name = "queue", "events", "inbox", "webhook delivery log"
	sys.State.name = "state database"
	sys.Store.name, sys.Results.name, sys.Forge.name, sys.Gate.name = "store", "results", "forge", "gate"
	sys.Reporter.name, sys.Scanner.name, sys.Bot.name = "reporter", "scanner", "bot"
	sys.Receiver.name, sys.HTTP.name = "webhook receiver", "HTTP server"
	return sys
}

// openSystem builds the parts sp asks for, and those they are built
// from, in one order. On error it closes what it opened.
func openSystem(s Settings, log *slog.Logger, sp spec) (*system, error) {
	sys := newSystem(s, log)
	need, want := closure(sp.need), closure(append(slices.Clone(sp.need), sp.may...))
	parts, builders := sys.parts(), sys.builders()
	for id := range numParts {
		if !want[id] || parts[id].isSet() || builders[id] == nil {
			continue
		}
		if err := builders[id](); err != nil {
			sys.Close()
			return nil, err
		}
	}
	var missing []string
	for id, p := range parts {
		if need[partID(id)] && !p.isSet() {
			missing = append(missing, p.partName()+": "+p.absence())
		}
	}
	if len(missing) > 0 {
		sys.Close()
		return nil, fmt.Errorf("cannot start without its %s", strings.Join(missing, "; its "))
	}
	return sys, nil
}

// closure is ids with the parts they are built from.
func closure(ids []partID) map[partID]bool {
	out := map[partID]bool{}
	var add func(id partID)
	add = func(id partID) {
		if out[id] {
			return
		}
		out[id] = true
		for _, d := range deps[id] {
			add(d)
		}
	}
	for _, id := range ids {
		add(id)
	}
	return out
}

// onClose adds f to what Close runs.
func (sys *system) onClose(f func() error) { sys.closers = append(sys.closers, f) }

// Close closes the parts, the last opened first.
func (sys *system) Close() error {
	var errs []error
	for _, f := range slices.Backward(sys.closers) {
		errs = append(errs, f())
	}
	sys.closers = nil
	return errors.Join(errs...)
}

// receiver is the webhook receiver of --forge, mounted at /hook/NAME.
type receiver struct {
	name       string
	handler    http.Handler
	secretPath string // where the webhook secret came from, for the log
}

// httpServer is the process's web server, listening from start so that
// a taken address is an error at start.
type httpServer struct {
	srv *http.Server
	ln  net.Listener
}

// queueCollector exports queue depth per pool and state.
type queueCollector struct{ q queue.Queue }

var queueDesc = prometheus.NewDesc("turtles_queue_tasks", "Tasks in the queue by pool and state.", []string{"pool", "state"}, nil)

func (c queueCollector) Describe(ch chan<- *prometheus.Desc) { ch <- queueDesc }

func (c queueCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	stats, err := c.q.Stats(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(queueDesc, err)
		return
	}
	for _, st := range stats {
		ch <- prometheus.MustNewConstMetric(queueDesc, prometheus.GaugeValue, float64(st.Count), st.Pool, st.State)
	}
}
