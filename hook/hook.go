// Package hook receives forge webhooks and turns them into tasks on the
// queue. For GitHub it checks the delivery's signature, publishes one plan
// task per commit to test (a bot later reads the commit's .turtles.yaml and
// publishes the test tasks) and answers so that GitHub retries exactly the
// deliveries that were not queued. What the signed payload cannot decide
// (a pull request by an author it does not vouch for, comment commands)
// goes to the gate through a queue.Inbox; a new push to a pull request
// cancels the old head's tasks.
//
// It does no I/O beyond the request and the queue. cmd/turtles mounts it;
// tools and tests may import it too.
package hook

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/turtles-ci/turtles"
	"github.com/turtles-ci/turtles/queue"
)

// Queue is what the receiver needs of the queue; queue.Queue satisfies it.
// Publish returns queue.ErrDuplicate when the same task is already queued
// or running; Cancel withdraws the tasks of a pull request's old head.
type Queue interface {
	Publish(ctx context.Context, t turtles.Task) error
	Cancel(ctx context.Context, repo, sha string, pr int, reason string) (int, error)
}

// DefaultMaxBody is the largest payload accepted when Config.MaxBody is 0.
// GitHub caps payloads at 25 MB.
const DefaultMaxBody = 25 << 20

// Config configures a GitHub receiver.
type Config struct {
	// Secret is the webhook secret shared with GitHub. Required.
	Secret []byte
	// Queue receives the plan tasks. Required.
	Queue Queue
	// Deliveries remembers handled deliveries. Required.
	Deliveries DeliveryLog
	// PublishTimeout bounds how long a delivery waits for the queue (to
	// cancel, publish and hand to the gate) before it is answered 503, so
	// that the forge delivers it again; it must leave room under the
	// forge's own timeout (GitHub's is 10 s). 0: as long as the request
	// lasts, which during a broker outage is until the sender gives up,
	// with no answer.
	PublishTimeout time.Duration
	// Inbox receives what needs forge lookups (pull requests by authors
	// the payload cannot vouch for, comment commands) for the gate. Nil:
	// those are ignored, so a stranger's code never runs unchecked.
	Inbox queue.Inbox
	// Pool is the pool of plan tasks; turtles.DefaultPool when empty.
	Pool string
	// MaxBody bounds the request body in bytes; DefaultMaxBody when 0.
	MaxBody int64
	// Budget bounds the body bytes held at once across all requests; share
	// one per process. Required, and at least MaxBody plus one chunk.
	Budget *Budget
	// Log receives one line per delivery; nil discards.
	Log *slog.Logger
	// Registerer gets turtles_webhook_deliveries_total; nil: no metrics.
	Registerer prometheus.Registerer
	// Now is the clock for task creation times; time.Now when nil.
	Now func() time.Time
}

// GitHub is an http.Handler for GitHub webhook deliveries.
type GitHub struct {
	secret         []byte
	queue          Queue
	inbox          queue.Inbox
	deliveries     DeliveryLog
	inflight       keyLock
	publishTimeout time.Duration
	pool           string
	maxBody        int64
	budget         *Budget
	log            *slog.Logger
	now            func() time.Time
	deliveryN      *prometheus.CounterVec
}

// NewGitHub returns a receiver for cfg, or an error if cfg is incomplete.
func NewGitHub(cfg Config) (*GitHub, error) {
	switch {
	case len(cfg.Secret) == 0:
		return nil, errors.New("github webhook: empty secret: every delivery must be signed")
	case cfg.Queue == nil:
		return nil, errors.New("github webhook: no queue")
	case cfg.Deliveries == nil:
		return nil, errors.New("github webhook: no delivery log")
	case cfg.PublishTimeout < 0:
		return nil, fmt.Errorf("github webhook: negative publish timeout %s", cfg.PublishTimeout)
	case cfg.MaxBody < 0:
		return nil, fmt.Errorf("github webhook: negative max body %d", cfg.MaxBody)
	case cfg.Budget == nil:
		return nil, errors.New("github webhook: no body budget")
	}
	h := &GitHub{
		secret:         cfg.Secret,
		queue:          cfg.Queue,
		inbox:          cfg.Inbox,
		deliveries:     cfg.Deliveries,
		publishTimeout: cfg.PublishTimeout,
		pool:           cfg.Pool,
		maxBody:        cfg.MaxBody,
		budget:         cfg.Budget,
		log:            cfg.Log,
		now:            cfg.Now,
	}
	if h.pool == "" {
		h.pool = turtles.DefaultPool
	}
	// A bad pool would fail every delivery; say so at start instead.
	probe := planTask(turtles.Repo{Name: "o/r", CloneURL: "x"}, zeroSHA, h.pool, time.Time{})
	if err := probe.Validate(); err != nil {
		return nil, fmt.Errorf("github webhook: %w", err)
	}
	if h.maxBody == 0 {
		h.maxBody = DefaultMaxBody
	}
	if need := h.maxBody + maxChunk; h.budget.size < need {
		// The largest body would never fit: every such delivery would
		// be turned away as if the server were busy.
		return nil, fmt.Errorf("github webhook: body budget %d bytes is less than max body and one chunk, %d", h.budget.size, need)
	}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	if h.now == nil {
		h.now = time.Now
	}
	h.deliveryN = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "turtles_webhook_deliveries_total",
		Help: "GitHub webhook deliveries by event and result.",
	}, []string{"event", "result"})
	if cfg.Registerer != nil {
		if err := cfg.Registerer.Register(h.deliveryN); err != nil {
			return nil, fmt.Errorf("github webhook: register metrics: %w", err)
		}
	}
	return h, nil
}

// Results, the "result" label of turtles_webhook_deliveries_total.
const (
	resultQueued      = "queued"     // tasks published (or already queued)
	resultIgnored     = "ignored"    // nothing to do
	resultPong        = "pong"       // ping answered
	resultDuplicate   = "duplicate"  // delivery handled before
	resultReplay      = "replay"     // same body handled before under another delivery ID
	resultBusy        = "busy"       // no room in the body budget; sender retries
	resultMethod      = "bad_method" // not a POST
	resultTooLarge    = "too_large"  // body over MaxBody
	resultSignature   = "bad_signature"
	resultBadRequest  = "bad_request" // headers or payload malformed
	resultUnavailable = "unavailable" // queue or delivery log failed; sender retries
)

// unverified is the event label before the signature was checked, so that
// strangers cannot mint label values.
const unverified = "unverified"

// response is the body of every answer.
type response struct {
	Message string   `json:"message"`
	Tasks   []string `json:"tasks"`
}

// ServeHTTP implements http.Handler.
//
// Nothing is done with a body before its signature is checked: no JSON
// parse, no delivery log lookup. Until then it is a stranger's, so it is
// read only as far as the shared Budget allows, and only when the
// signature header could be right at all.
func (h *GitHub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	delivery := r.Header.Get("X-GitHub-Delivery")
	log := h.log.With("delivery", delivery)
	reply := newReplier(w, h.deliveryN)
	if !postOnly(w, r, reply) {
		return
	}
	mac, ok := parseSignature(r.Header.Get("X-Hub-Signature-256"))
	if !ok {
		log.Warn("webhook signature missing or malformed", "remote", r.RemoteAddr)
		reply(http.StatusUnauthorized, unverified, resultSignature, "bad signature", nil)
		return
	}
	b, ok := h.readBody(w, r, log, reply, h.secret)
	defer b.release()
	if !ok {
		return
	}
	if !b.signed(mac) {
		// Which part was wrong is nobody's business but ours; and even
		// ours does not need the signature itself.
		log.Warn("webhook signature wrong", "remote", r.RemoteAddr)
		reply(http.StatusUnauthorized, unverified, resultSignature, "bad signature", nil)
		return
	}
	event := r.Header.Get("X-GitHub-Event")
	if event == "" {
		reply(http.StatusBadRequest, unverified, resultBadRequest, "missing X-GitHub-Event header", nil)
		return
	}
	log = log.With("event", event)
	switch {
	case delivery == "":
		reply(http.StatusBadRequest, event, resultBadRequest, "missing X-GitHub-Delivery header", nil)
		return
	case strings.HasPrefix(delivery, bodyKey):
		reply(http.StatusBadRequest, event, resultBadRequest, "malformed X-GitHub-Delivery header", nil)
		return
	}
	p, err := parseGitHub(event, b.bytes(), h.pool, h.now().UTC())
	if err != nil {
		log.Warn("bad webhook payload", "err", err)
		reply(http.StatusBadRequest, event, resultBadRequest, err.Error(), nil)
		return
	}
	if event == "ping" {
		log.Info("webhook ping")
		reply(http.StatusOK, event, resultPong, "pong", nil)
		return
	}
	// The delivery header is not signed: anyone who saw one delivery can
	// send its body again under a new ID. The body's hash is what tells a
	// replay; the ID still tells GitHub's own redelivery.
	h.handle(r.Context(), log, reply, event, deliveryKeys{id: delivery, body: b.key("")}, p)
}

// replier answers a webhook and counts the answer by event and result.
type replier func(code int, event, result, msg string, ids []string)

func newReplier(w http.ResponseWriter, n *prometheus.CounterVec) replier {
	return func(code int, event, result, msg string, ids []string) {
		n.WithLabelValues(event, result).Inc()
		if ids == nil {
			ids = []string{}
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		json.NewEncoder(w).Encode(response{Message: msg, Tasks: ids})
	}
}

// postOnly answers anything but a POST and reports whether r is one.
func postOnly(w http.ResponseWriter, r *http.Request, reply replier) bool {
	if r.Method == http.MethodPost {
		return true
	}
	w.Header().Set("Allow", http.MethodPost)
	reply(http.StatusMethodNotAllowed, unverified, resultMethod, "method not allowed: use POST", nil)
	return false
}

// readBody reads a webhook's body, at most maxBody bytes, charged to the
// budget, with its HMAC under secret when that is not nil. When it cannot,
// it has answered and returns false. The body must be released either way.
func (h *GitHub) readBody(w http.ResponseWriter, r *http.Request, log *slog.Logger, reply replier, secret []byte) (*body, bool) {
	b, err := readBody(r.Context(), r.Body, r.ContentLength, h.maxBody, h.budget, secret)
	if err == nil {
		return b, true
	}
	// The rest of the body is not worth reading to keep the connection.
	w.Header().Set("Connection", "close")
	switch {
	case errors.Is(err, errTooLarge):
		log.Warn("webhook body too large", "limit", h.maxBody, "declared", r.ContentLength)
		reply(http.StatusRequestEntityTooLarge, unverified, resultTooLarge,
			fmt.Sprintf("body larger than %d bytes", h.maxBody), nil)
	case errors.Is(err, errNoRoom):
		log.Warn("webhook turned away: body budget full", "in_flight", h.budget.InFlight(), "remote", r.RemoteAddr)
		reply(http.StatusServiceUnavailable, unverified, resultBusy, "too many deliveries in flight, retry later", nil)
	default:
		log.Warn("read webhook body", "err", err, "remote", r.RemoteAddr)
		reply(http.StatusBadRequest, unverified, resultBadRequest, "could not read body", nil)
	}
	return b, false
}

// deliveryKeys are what the delivery log knows a delivery by: the
// forge's delivery ID and the hash of the body.
type deliveryKeys struct{ id, body string }

// handle does what every forge's receiver does with a verified, parsed
// delivery: drop what needs a gate when there is none, answer what asks
// for nothing, and act once per delivery ID and once per body. label
// names the event in metrics and answers.
func (h *GitHub) handle(ctx context.Context, log *slog.Logger, reply replier, label string, keys deliveryKeys, p parsed) {
	if len(p.requests) > 0 && h.inbox == nil {
		log.Warn("webhook needs the gate, which is not configured: ignored", "user", p.requests[0].User)
		p.requests = nil
		if p.empty() {
			p.ignored = "needs a trust decision and no gate is configured"
		}
	}
	if p.empty() {
		log.Debug("webhook ignored", "why", p.ignored)
		reply(http.StatusAccepted, label, resultIgnored, "ignored: "+p.ignored, nil)
		return
	}
	ids := make([]string, len(p.tasks))
	for i, t := range p.tasks {
		ids[i] = t.ID()
	}
	// Two copies of one body at once would both pass the checks below
	// before either is recorded.
	unlock, ok := h.inflight.lock(ctx, keys.body)
	if !ok {
		reply(http.StatusServiceUnavailable, label, resultUnavailable, "the same payload is being handled, retry later", nil)
		return
	}
	defer unlock()
	seenID, err := h.deliveries.Seen(ctx, keys.id)
	seenBody := false
	if err == nil {
		seenBody, err = h.deliveries.Seen(ctx, keys.body)
	}
	switch {
	case err != nil:
		log.Error("read delivery log", "err", err)
		reply(http.StatusServiceUnavailable, label, resultUnavailable, "delivery log unavailable, retry later", nil)
		return
	case seenID:
		log.Info("webhook delivery seen before")
		reply(http.StatusOK, label, resultDuplicate, "duplicate delivery: already handled", ids)
		return
	case seenBody:
		// A 2xx, so a sender that retries does not retry forever; but
		// nothing is queued: a replayed payload never runs again.
		log.Warn("webhook payload seen before under another delivery ID: not queued", "body", keys.body)
		reply(http.StatusOK, label, resultReplay, "payload handled before under another delivery: already handled", ids)
		return
	}
	msg, err := h.actWithin(ctx, log, p)
	if err != nil {
		reply(http.StatusServiceUnavailable, label, resultUnavailable, "queue unavailable, retry later", nil)
		return
	}
	// Recorded only now, so that a delivery that failed above is handled
	// in full when it comes again. One that is not recorded is never
	// answered 2xx: the forge sends it again, and the republish is one
	// the queue turns into ErrDuplicate while the task is live.
	for _, k := range []string{keys.id, keys.body} {
		if _, err := h.deliveries.FirstDelivery(ctx, k); err != nil {
			log.Error("record delivery; answering 503 so that it comes again", "key", k, "err", err)
			reply(http.StatusServiceUnavailable, label, resultUnavailable, "delivery log unavailable, retry later", nil)
			return
		}
	}
	reply(http.StatusOK, label, resultQueued, msg, ids)
}

// actWithin is act bounded by the publish timeout. The request's own
// context ends only when the sender hangs up, and a queue waits out an
// outage until its caller's context ends.
func (h *GitHub) actWithin(ctx context.Context, log *slog.Logger, p parsed) (string, error) {
	if h.publishTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, h.publishTimeout)
		defer cancel()
	}
	return h.act(ctx, log, p)
}

// act cancels what a push superseded, publishes tasks and hands requests
// to the gate, and says what happened, for the sender.
func (h *GitHub) act(ctx context.Context, log *slog.Logger, p parsed) (string, error) {
	var parts []string
	if c := p.cancel; c != nil {
		n, err := h.queue.Cancel(ctx, c.repo, c.sha, c.pr, "superseded by a newer push")
		if err != nil {
			log.Error("cancel superseded tasks", "sha", c.sha, "err", err)
			return "", fmt.Errorf("cancel tasks of %s: %w", c.sha, err)
		}
		if n > 0 {
			log.Info("superseded tasks cancelled", "sha", c.sha, "pr", c.pr, "count", n)
			parts = append(parts, fmt.Sprintf("cancelled %d superseded task(s)", n))
		}
	}
	if len(p.tasks) > 0 {
		msg, err := h.publish(ctx, log, p.tasks)
		if err != nil {
			return "", err
		}
		parts = append(parts, msg)
	}
	for _, req := range p.requests {
		body, err := json.Marshal(req)
		if err != nil {
			return "", fmt.Errorf("encode gate request: %w", err)
		}
		if err := h.inbox.Put(ctx, body); err != nil {
			log.Error("hand request to the gate", "err", err)
			return "", fmt.Errorf("hand request to the gate: %w", err)
		}
		log.Info("request handed to the gate", "repo", req.Repo.Name, "pr", req.PR, "user", req.User, "commands", len(req.Commands))
		parts = append(parts, "sent to the gate")
	}
	if len(parts) == 0 {
		parts = append(parts, "nothing to do")
	}
	return strings.Join(parts, "; "), nil
}

// publish publishes tasks in order and says what happened, for the sender.
// A task already queued counts as published.
func (h *GitHub) publish(ctx context.Context, log *slog.Logger, tasks []turtles.Task) (string, error) {
	var queued, dup int
	for _, t := range tasks {
		tlog := log.With("task", t.ID(), "repo", t.Repo.Name, "sha", t.SHA, "pr", t.PR, "trusted", t.Trusted)
		switch err := h.queue.Publish(ctx, t); {
		case errors.Is(err, queue.ErrDuplicate):
			tlog.Info("task already queued")
			dup++
		case err != nil:
			tlog.Error("publish task", "err", err)
			return "", fmt.Errorf("publish task %s: %w", t.ID(), err)
		default:
			tlog.Info("task queued")
			queued++
		}
	}
	var parts []string
	if queued > 0 {
		parts = append(parts, fmt.Sprintf("queued %d task(s)", queued))
	}
	if dup > 0 {
		parts = append(parts, fmt.Sprintf("%d task(s) already queued", dup))
	}
	return strings.Join(parts, "; "), nil
}

// parseSignature returns the MAC in header, "sha256=<hex>", and whether
// it has that form; checking it against the body is body.signed's.
func parseSignature(header string) ([]byte, bool) {
	hexSum, ok := strings.CutPrefix(header, "sha256=")
	if !ok {
		return nil, false
	}
	mac, err := hex.DecodeString(hexSum)
	if err != nil || len(mac) != sha256.Size {
		return nil, false
	}
	return mac, true
}
