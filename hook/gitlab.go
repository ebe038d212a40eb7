package hook

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
)

// GitLab is an http.Handler for GitLab webhook deliveries (project or
// group webhooks with push, merge request and comment events). GitLab
// does not sign payloads: it sends the webhook's secret token in
// X-Gitlab-Token, which must equal Config.Secret. Everything after that
// check (deduplication, superseding, the gate) is shared with GitHub.
type GitLab struct {
	core      *GitHub
	secretSum [sha256.Size]byte
	deliveryN *prometheus.CounterVec
}

// NewGitLab returns a receiver for cfg, or an error if cfg is incomplete.
// Its metric is turtles_gitlab_webhook_deliveries_total.
func NewGitLab(cfg Config) (*GitLab, error) {
	if len(cfg.Secret) == 0 {
		return nil, errors.New("gitlab webhook: empty secret token: every delivery must carry it")
	}
	reg := cfg.Registerer
	cfg.Registerer = nil // the core's GitHub counter stays unregistered
	core, err := NewGitHub(cfg)
	if err != nil {
		return nil, fmt.Errorf("gitlab webhook (shared part): %w", err)
	}
	h := &GitLab{core: core, secretSum: sha256.Sum256(cfg.Secret)}
	h.deliveryN = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "turtles_gitlab_webhook_deliveries_total",
		Help: "GitLab webhook deliveries by event and result.",
	}, []string{"event", "result"})
	if reg != nil {
		if err := reg.Register(h.deliveryN); err != nil {
			return nil, fmt.Errorf("gitlab webhook: register metrics: %w", err)
		}
	}
	return h, nil
}

// resultToken is the result label of a missing or wrong token.
const resultToken = "bad_token"

// gitlabEvents are the event label values: anything else is "other", so
// that a sender cannot mint label values.
var gitlabEvents = map[string]bool{GitLabPush: true, GitLabTagPush: true, GitLabMergeRequest: true, GitLabNote: true, GitLabSystem: true}

// ServeHTTP implements http.Handler.
func (h *GitLab) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// Idempotency-Key stays the same when GitLab retries a delivery;
	// older GitLab versions only send the event's UUID.
	delivery := r.Header.Get("Idempotency-Key")
	if delivery == "" {
		delivery = r.Header.Get("X-Gitlab-Event-UUID")
	}
	log := h.core.log.With("forge", "gitlab", "delivery", delivery)
	reply := newReplier(w, h.deliveryN)
	if !postOnly(w, r, reply) {
		return
	}
	// The token is checked before the body is read: a stranger costs us
	// no read at all.
	if !h.tokenOK(r.Header.Get("X-Gitlab-Token")) {
		log.Warn("webhook token missing or wrong", "remote", r.RemoteAddr)
		reply(http.StatusUnauthorized, unverified, resultToken, "bad token", nil)
		return
	}
	// GitLab signs nothing, so the token is all the proof there is; the
	// body still counts against the budget like any other.
	b, ok := h.core.readBody(w, r, log, reply, nil)
	defer b.release()
	if !ok {
		return
	}
	event := r.Header.Get("X-Gitlab-Event")
	label := event
	if !gitlabEvents[label] {
		label = "other"
	}
	switch {
	case event == "":
		reply(http.StatusBadRequest, unverified, resultBadRequest, "missing X-Gitlab-Event header", nil)
		return
	case delivery == "":
		reply(http.StatusBadRequest, label, resultBadRequest, "missing Idempotency-Key or X-Gitlab-Event-UUID header", nil)
		return
	case strings.HasPrefix(delivery, bodyKey):
		reply(http.StatusBadRequest, label, resultBadRequest, "malformed Idempotency-Key or X-Gitlab-Event-UUID header", nil)
		return
	}
	log = log.With("event", event)
	p, err := parseGitLab(event, b.bytes(), h.core.pool, h.core.now().UTC())
	if err != nil {
		log.Warn("bad webhook payload", "err", err)
		reply(http.StatusBadRequest, label, resultBadRequest, err.Error(), nil)
		return
	}
	// Kept apart from GitHub's keys in a shared log. Idempotency-Key is
	// no more signed than GitHub's delivery ID: the body's hash tells a
	// payload sent again under a new key.
	h.core.handle(r.Context(), log, reply, label, deliveryKeys{id: "gitlab:" + delivery, body: b.key("gitlab:")}, p)
}

// tokenOK compares token with the secret in constant time; hashing both
// first keeps the secret's length from leaking through timing too.
func (h *GitLab) tokenOK(token string) bool {
	if token == "" {
		return false
	}
	sum := sha256.Sum256([]byte(token))
	return subtle.ConstantTimeCompare(sum[:], h.secretSum[:]) == 1
}
