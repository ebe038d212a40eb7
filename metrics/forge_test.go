package metrics

import (
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestForgeRate(t *testing.T) {
	headers := map[string]map[string]string{
		"/github": {"X-RateLimit-Remaining": "4990", "X-RateLimit-Limit": "5000", "X-RateLimit-Reset": "1714579320", "X-RateLimit-Resource": "core"},
		"/search": {"X-RateLimit-Remaining": "29", "X-RateLimit-Limit": "30", "X-RateLimit-Reset": "1714579380", "X-RateLimit-Resource": "search"},
		"/gitlab": {"RateLimit-Remaining": "1999", "RateLimit-Limit": "2000", "RateLimit-Reset": "1714579400"},
		"/weird":  {"X-RateLimit-Remaining": "7", "X-RateLimit-Resource": "Not A Word"},
		"/proxy":  {}, // an answer without the headers changes nothing
		"/bad":    {"X-RateLimit-Remaining": "lots"},
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for k, v := range headers[r.URL.Path] {
			w.Header().Set(k, v)
		}
	}))
	defer srv.Close()
	reg := prometheus.NewRegistry()
	m, err := NewForgeRate("github", reg)
	if err != nil {
		t.Fatal(err)
	}
	c := &http.Client{Transport: m.Transport(nil)}
	for _, p := range []string{"/github", "/search", "/gitlab", "/weird", "/proxy", "/bad"} {
		resp, err := c.Get(srv.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	const want = `
# HELP turtles_forge_rate_limit_remaining Requests left in the forge's current rate-limit window, from its latest answer, by forge and resource (GitHub's core, search, graphql; GitLab's api).
# TYPE turtles_forge_rate_limit_remaining gauge
turtles_forge_rate_limit_remaining{forge="github",resource="api"} 1999
turtles_forge_rate_limit_remaining{forge="github",resource="core"} 4990
turtles_forge_rate_limit_remaining{forge="github",resource="other"} 7
turtles_forge_rate_limit_remaining{forge="github",resource="search"} 29
# HELP turtles_forge_rate_limit Requests allowed in one rate-limit window of the forge, from its latest answer.
# TYPE turtles_forge_rate_limit gauge
turtles_forge_rate_limit{forge="github",resource="api"} 2000
turtles_forge_rate_limit{forge="github",resource="core"} 5000
turtles_forge_rate_limit{forge="github",resource="search"} 30
# HELP turtles_forge_rate_limit_reset_timestamp_seconds When the forge's current rate-limit window ends, from its latest answer.
# TYPE turtles_forge_rate_limit_reset_timestamp_seconds gauge
turtles_forge_rate_limit_reset_timestamp_seconds{forge="github",resource="api"} 1.7145794e+09
turtles_forge_rate_limit_reset_timestamp_seconds{forge="github",resource="core"} 1.71457932e+09
turtles_forge_rate_limit_reset_timestamp_seconds{forge="github",resource="search"} 1.71457938e+09
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want)); err != nil {
		t.Error(err)
	}
}

// FuzzForgeRateHeaders: whatever a forge (or a proxy in front of it)
// sends as rate-limit headers, reading them does not panic, sets no
// negative count, and mints no resource label beyond a short word.
func FuzzForgeRateHeaders(f *testing.F) {
	f.Add("4990", "5000", "1714579320", "core", false)
	f.Add("1999", "2000", "60", "", true)
	f.Add("-1", "NaN", "99999999999999999999", "Not A Word", false)
	f.Add("1e308", "+Inf", "-5", strings.Repeat("a", 41), true)
	f.Add("NaN", "Inf", "NaN", "core", false)
	f.Fuzz(func(t *testing.T, remaining, limit, reset, resource string, gitlab bool) {
		reg := prometheus.NewRegistry()
		m, err := NewForgeRate("github", reg)
		if err != nil {
			t.Fatal(err)
		}
		prefix := "X-RateLimit-"
		if gitlab {
			prefix = "RateLimit-"
		}
		h := http.Header{}
		h.Set(prefix+"Remaining", remaining)
		h.Set(prefix+"Limit", limit)
		h.Set(prefix+"Reset", reset)
		h.Set(prefix+"Resource", resource)
		m.observe(h, t0)
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			for _, metric := range mf.GetMetric() {
				if v := metric.GetGauge().GetValue(); v < 0 || math.IsNaN(v) || math.IsInf(v, 0) {
					t.Errorf("%s = %v from %q, %q, %q", mf.GetName(), v, remaining, limit, reset)
				}
				for _, l := range metric.GetLabel() {
					if l.GetName() == "resource" && (len(l.GetValue()) > 40 || strings.Trim(l.GetValue(), "abcdefghijklmnopqrstuvwxyz_") != "") {
						t.Errorf("resource label %q from %q", l.GetValue(), resource)
					}
				}
			}
		}
	})
}
