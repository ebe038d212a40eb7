package web

import (
	"encoding/json"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
)

// FuzzSearchQuery sends any query string to the search page and its API:
// the answer is the page (200) or the reason it is not (400), never a
// failure of ours; a filter that parses is one the history accepts, and
// a cursor that parses prints as one that reads the same.
func FuzzSearchQuery(f *testing.F) {
	for _, seed := range []string{
		"", "repo=octo/hello&pr=7", "sha=ABCD&state=finished", "since=14d&until=2025-03-14", "after=1741964400000.1dbcb5fd6c963d6a",
		"limit=1000", "branch=refs/pull/7/head&verdict=flake", "%zz", "a=1&a=2", "since=2025-03-14T15:09:26Z", "pr=0&repo=x",
		"outcome=success&context=debian-12/unit&poll=100",
	} {
		f.Add(seed)
	}
	srv := New(newDash(f).config())
	f.Fuzz(func(t *testing.T, raw string) {
		if q, err := url.ParseQuery(raw); err == nil {
			if flt, err := parseFilter(q, time.Now(), 50, maxPageSize); err == nil {
				if flt.After != nil {
					if again, err := parseCursor(formatCursor(flt.After)); err != nil || *again != *flt.After {
						t.Errorf("cursor %q prints as %q, which reads as %v, %v", q.Get("after"), formatCursor(flt.After), again, err)
					}
				}
				if flt.PR != 0 && flt.Repo == "" {
					t.Errorf("%q: a pull request without its repository", raw)
				}
			} else if _, ok := isBad(err); !ok {
				t.Errorf("%q: %v is not a bad request", raw, err)
			}
		}
		for _, path := range []string{"/history", "/api/v1/tasks"} {
			req := httptest.NewRequest("GET", "/", nil)
			req.URL.Path, req.URL.RawQuery = path, raw
			rec := httptest.NewRecorder()
			srv.ServeHTTP(rec, req)
			if rec.Code != 200 && rec.Code != 400 {
				t.Fatalf("GET %s?%s = %d: %s", path, raw, rec.Code, rec.Body)
			}
			if strings.HasPrefix(path, "/api/") && !json.Valid(rec.Body.Bytes()) {
				t.Fatalf("GET %s?%s: not JSON: %s", path, raw, rec.Body)
			}
		}
	})
}
