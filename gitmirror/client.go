package gitmirror

import (
	"fmt"
	"net/url"
	"strings"

	"github.com/turtles-ci/turtles"
	"github.com/turtles-ci/turtles/git"
)

// Client is a bot's way to a mirror.
type Client struct {
	// URL is the mirror's base URL, such as http://git-mirror:8080.
	URL string
	// Token is the bearer secret the mirror asks for. It travels in
	// git's environment only (git.Remote.Header).
	Token string
}

// Check reports what is wrong with c, for a bot's start.
func (c Client) Check() error {
	u, err := url.Parse(c.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("git mirror URL %q: want http(s)://HOST[:PORT][/PATH], without credentials", git.Redact(c.URL))
	}
	if len(c.Token) < 16 || strings.ContainsAny(c.Token, "\x00\r\n ") {
		return fmt.Errorf("git mirror token: want at least 16 bytes on one line, without spaces")
	}
	return nil
}

// Remote is where t's commit is fetched from through the mirror: the
// mirror's URL for the same OWNER/NAME as t's clone URL, with the token
// and the task's key as headers.
func (c Client) Remote(t turtles.Task) (git.Remote, error) {
	if err := CheckName(t.Repo.Name); err != nil {
		return git.Remote{}, err
	}
	return git.Remote{
		URL:    strings.TrimRight(c.URL, "/") + "/" + t.Repo.Name + ".git",
		Header: []string{"Authorization: Bearer " + c.Token, TaskHeader + ": " + t.Key()},
	}, nil
}
