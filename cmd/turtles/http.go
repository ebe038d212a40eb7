package main

import (
	"fmt"
	"net/http"
	"time"

	"github.com/spf13/pflag"
)

// httpFlags are the limits every turtles HTTP server and webhook receiver
// takes, so that a stranger who connects cannot hold memory or
// connections for long.
var httpFlags = []string{"http-read-timeout", "http-idle-timeout", "webhook-body-budget", "webhook-body-wait", "webhook-publish-timeout"}

func httpOptions() []option {
	return []option{
		opt("http-read-timeout", "how long a client may take to send a whole request, headers and body; a webhook trickled slower is cut off", dur(func(s *Settings) *time.Duration { return &s.HTTPReadTimeout })),
		opt("http-idle-timeout", "how long an idle keep-alive connection stays open", dur(func(s *Settings) *time.Duration { return &s.HTTPIdleTimeout })),
		opt("webhook-body-budget", "webhook body bytes held in memory at once across all requests, such as 64MiB; must exceed the 25 MB GitHub payload limit", byteSize(func(s *Settings) *ByteSize { return &s.WebhookBodyBudget })),
		opt("webhook-body-wait", "how long a webhook waits for room in the body budget before it is answered 503 (the forge delivers it again)", dur(func(s *Settings) *time.Duration { return &s.WebhookBodyWait })),
		opt("webhook-publish-timeout", "how long a webhook waits for the queue to take its tasks (a broker outage) before it is answered 503 (the forge delivers it again); keep it under the forge's 10 s", dur(func(s *Settings) *time.Duration { return &s.WebhookPublishTimeout })),
	}
}

// httpDefaults are the defaults of httpFlags. A forge gives a webhook 10 s
// to be answered, so a body that takes 30 s to arrive is no webhook.
// A webhook waits for the queue 5 s at most: an answer within the
// forge's 10 s, with room for reading the body, and a publish to a broker
// that is up takes milliseconds.
// An idle timeout of 2 minutes keeps browsers' connections to log pages
// and a forge's keep-alive connection useful without keeping a stranger's
// open for long.
func httpDefaults(s *Settings) {
	s.HTTPReadTimeout = 30 * time.Second
	s.HTTPIdleTimeout = 2 * time.Minute
	s.WebhookBodyBudget = 64 << 20
	s.WebhookBodyWait = time.Second
	s.WebhookPublishTimeout = 5 * time.Second
}

// addHTTPFlags registers httpFlags on a command that addFlags already
// gave --config; names chooses some of them.
func addHTTPFlags(fs *pflag.FlagSet, names ...string) {
	if len(names) == 0 {
		names = httpFlags
	}
	addOptions(fs, names...)
}

func (s *Settings) validateHTTP() error {
	switch {
	case s.HTTPReadTimeout <= 0:
		return fmt.Errorf("http-read-timeout: %s, want more than 0", s.HTTPReadTimeout)
	case s.HTTPIdleTimeout <= 0:
		return fmt.Errorf("http-idle-timeout: %s, want more than 0", s.HTTPIdleTimeout)
	case s.WebhookBodyWait < 0:
		return fmt.Errorf("webhook-body-wait: negative")
	case s.WebhookPublishTimeout <= 0:
		// Unbounded, a webhook during an outage gets no answer at all.
		return fmt.Errorf("webhook-publish-timeout: %s, want more than 0", s.WebhookPublishTimeout)
	}
	return nil
}

// newHTTPServer is the one way turtles builds an HTTP server, so that none
// goes without read and idle timeouts.
//
// ReadTimeout bounds the whole request; net/http lifts it once a handler
// has read the body, so live log pages, which stream for as long as a
// task runs, are not cut. For the same reason there is no WriteTimeout:
// a log page or an image download may take as long as it takes, and a
// slow reader of either holds a connection, not memory.
func newHTTPServer(h http.Handler, s Settings) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: min(10*time.Second, s.HTTPReadTimeout),
		ReadTimeout:       s.HTTPReadTimeout,
		IdleTimeout:       s.HTTPIdleTimeout,
	}
}
