package metrics

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// ForgeRate exports the rate limit a forge reports on each API answer:
// GitHub's X-RateLimit-Remaining, -Limit, -Reset and -Resource, GitLab's
// RateLimit-Remaining, -Limit and -Reset. The values are those of the
// latest answer: with several GitHub App installations, whichever
// installation was asked last.
type ForgeRate struct {
	forge                   string
	remaining, limit, reset *prometheus.GaugeVec
}

// NewForgeRate returns the rate-limit gauges of forge ("github",
// "gitlab"), registered with reg.
func NewForgeRate(forge string, reg prometheus.Registerer) (*ForgeRate, error) {
	labels := []string{"forge", "resource"}
	m := &ForgeRate{
		forge: forge,
		remaining: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "turtles_forge_rate_limit_remaining",
			Help: "Requests left in the forge's current rate-limit window, from its latest answer, by forge and resource (GitHub's core, search, graphql; GitLab's api).",
		}, labels),
		limit: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "turtles_forge_rate_limit",
			Help: "Requests allowed in one rate-limit window of the forge, from its latest answer.",
		}, labels),
		reset: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "turtles_forge_rate_limit_reset_timestamp_seconds",
			Help: "When the forge's current rate-limit window ends, from its latest answer.",
		}, labels),
	}
	var err error
	for _, g := range []**prometheus.GaugeVec{&m.remaining, &m.limit, &m.reset} {
		if *g, err = Register(reg, *g); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// Transport returns next (http.DefaultTransport when nil) reading the
// rate-limit headers of every answer.
func (m *ForgeRate) Transport(next http.RoundTripper) http.RoundTripper {
	if next == nil {
		next = http.DefaultTransport
	}
	return rateTransport{next: next, m: m}
}

type rateTransport struct {
	next http.RoundTripper
	m    *ForgeRate
}

func (t rateTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.next.RoundTrip(req)
	if err == nil {
		t.m.observe(resp.Header, time.Now())
	}
	return resp, err
}

// observe reads the headers of one answer; those without them (a
// proxy's error page) change nothing.
func (m *ForgeRate) observe(h http.Header, now time.Time) {
	prefix := "X-RateLimit-"
	if h.Get(prefix+"Remaining") == "" {
		prefix = "RateLimit-"
	}
	remaining, ok := count(h.Get(prefix + "Remaining"))
	if !ok {
		return
	}
	resource := resourceLabel(h.Get(prefix + "Resource"))
	m.remaining.WithLabelValues(m.forge, resource).Set(remaining)
	if limit, ok := count(h.Get(prefix + "Limit")); ok && limit > 0 {
		m.limit.WithLabelValues(m.forge, resource).Set(limit)
	}
	if reset, err := strconv.ParseInt(h.Get(prefix+"Reset"), 10, 64); err == nil && reset > 0 {
		// GitHub and GitLab send epoch seconds; a small number would be
		// seconds from now (the IETF draft's RateLimit-Reset).
		if reset < 1e9 {
			reset += now.Unix()
		}
		m.reset.WithLabelValues(m.forge, resource).Set(float64(reset))
	}
}

// count reads a header's count of requests: a whole number, not
// negative (ParseFloat would take "NaN" and "Inf" too).
func count(v string) (float64, bool) {
	n, err := strconv.ParseUint(v, 10, 63)
	if err != nil {
		return 0, false
	}
	return float64(n), true
}

// resourceLabel is the rate-limit resource an answer names: GitHub's
// are short lowercase words; anything else (or none: GitLab) is one
// label value, so that a forge cannot mint many.
func resourceLabel(r string) string {
	if r == "" {
		return "api"
	}
	if len(r) > 40 {
		return "other"
	}
	for _, c := range r {
		if (c < 'a' || c > 'z') && c != '_' {
			return "other"
		}
	}
	return r
}
