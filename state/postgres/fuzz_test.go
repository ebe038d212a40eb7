package postgres_test

import (
	"net"
	"net/url"
	"strings"
	"testing"

	"github.com/turtles-ci/turtles/state/postgres"
)

// databaseURL writes a URL in one of the forms people write them, some
// of them wrong (a password not percent-encoded).
func databaseURL(form uint8, user, pass, host, port string) string {
	switch form % 5 {
	case 0: // as net/url encodes it
		u := url.URL{Scheme: "postgres", User: url.UserPassword(user, pass), Host: net.JoinHostPort(host, port), Path: "/turtles"}
		return u.String()
	case 1: // pasted together by hand
		return "postgres://" + user + ":" + pass + "@" + host + ":" + port + "/turtles"
	case 2: // libpq's keyword form, unquoted
		return "host=" + host + " port=" + port + " user=" + user + " password=" + pass + " dbname=turtles"
	case 3: // libpq's keyword form, quoted
		q := strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(pass)
		return "host=" + host + " port=" + port + " user=" + user + " password='" + q + "' dbname=turtles"
	default: // the password as a query parameter
		return "postgres://" + user + "@" + net.JoinHostPort(host, port) + "/turtles?password=" + url.QueryEscape(pass)
	}
}

// FuzzURLError parses database URLs with a password in every form:
// neither the error of a URL that does not parse nor the description of
// one that does shows the password.
func FuzzURLError(f *testing.F) {
	for _, s := range []struct {
		form                   uint8
		user, pass, host, port string
	}{
		{0, "turtles", "s3cret-pw", "db.example", "5432"},
		{1, "turtles", "s3c ret", "db.example", "5432"},
		{1, "turtles", "sec/ret@x", "db.example", "5432"},
		{1, "turtles", "sec:ret@", "db.example", "notaport"},
		{1, "a@u", "sec:ret", "h", "5432"},
		{2, "turtles", "s3cret-pw", "db.example", "x"},
		{3, "turtles", "it's s3cret", "db.example", "5432"},
		{3, "turtles", `back\slash'`, "db.example", "5432"},
		{4, "turtles", "s3cret&pw=1", "db.example", "5432"},
		{1, "turtles", "%zz-s3cret", "[::1", "5432"},
	} {
		f.Add(s.form, s.user, s.pass, s.host, s.port)
	}
	f.Fuzz(func(t *testing.T, form uint8, user, pass, host, port string) {
		raw := databaseURL(form, user, pass, host, port)
		without := databaseURL(form, user, "", host, port)
		var secrets []string
		userinfo := strings.TrimSuffix((&url.URL{User: url.UserPassword("", pass)}).String(), "@")[len("//:"):]
		for _, s := range []string{pass, url.QueryEscape(pass), url.PathEscape(pass), userinfo} {
			// A password too short, or that is also some other part of
			// the URL, cannot be told from the rest.
			if len(s) >= 4 && !strings.Contains(without, s) && !strings.Contains(s, "xxxxx") {
				secrets = append(secrets, s)
			}
		}
		var shown string
		if cfg, err := postgres.ParseURL(raw); err != nil {
			shown = err.Error()
		} else {
			shown = postgres.Describe(cfg)
		}
		for _, s := range secrets {
			if strings.Contains(shown, s) {
				t.Fatalf("URL %q: %q shows the password %q", raw, shown, s)
			}
		}
	})
}

func TestDescribe(t *testing.T) {
	tests := []struct {
		url, want string
	}{
		{"postgres://u:pw@db.example/turtles", `PostgreSQL at db.example:5432 (database "turtles", user "u")`},
		{"postgres://u:pw@db1:5433,db2:5434/turtles?sslmode=disable", `PostgreSQL at db1:5433 (and 1 more hosts) (database "turtles", user "u")`},
		{"postgres://u@[::1]:6000/x", `PostgreSQL at [::1]:6000 (database "x", user "u")`},
		{"host=/run/postgresql user=u dbname=x", `PostgreSQL at /run/postgresql/.s.PGSQL.5432 (database "x", user "u")`},
		{"postgres://us/er:s3cret@h/db?user=u", `PostgreSQL at us:5432 (database (not shown), user "u")`},
		{"host=h user= password=s3cret dbname=x", `PostgreSQL at h:5432 (database "x", user (not shown))`},
	}
	for _, tt := range tests {
		cfg, err := postgres.ParseURL(tt.url)
		if err != nil {
			t.Errorf("ParseURL(%q): %v", tt.url, err)
			continue
		}
		if got := postgres.Describe(cfg); got != tt.want {
			t.Errorf("Describe(%q) = %q, want %q", tt.url, got, tt.want)
		}
	}
}
