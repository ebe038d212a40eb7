package forge

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// RateLimitError is returned when a forge refused a request for a rate
// limit. Retry after Reset. It is retryable: it never wraps ErrPermanent.
type RateLimitError struct {
	Reset time.Time
	Err   error
}

func (e *RateLimitError) Error() string {
	return fmt.Sprintf("rate limited until %s: %v", e.Reset.UTC().Format(time.RFC3339), e.Err)
}

func (e *RateLimitError) Unwrap() error { return e.Err }

// RetryAt returns Reset. The reporter, the gate and the scanner look for
// this method, not for this type.
func (e *RateLimitError) RetryAt() time.Time { return e.Reset }

// DefaultRateWait is how long to wait on a rate limit that did not say.
const DefaultRateWait = time.Minute

// ResetFromHeaders reads when to retry: Retry-After seconds first, then
// the epoch seconds in resetHeader (X-RateLimit-Reset on GitHub,
// RateLimit-Reset on GitLab), else DefaultRateWait from now.
func ResetFromHeaders(h http.Header, resetHeader string, now time.Time) time.Time {
	if v, err := strconv.ParseInt(h.Get("Retry-After"), 10, 64); err == nil && v >= 0 {
		return now.Add(time.Duration(v) * time.Second)
	}
	if v, err := strconv.ParseInt(h.Get(resetHeader), 10, 64); err == nil && v > 0 {
		return time.Unix(v, 0)
	}
	return now.Add(DefaultRateWait)
}

// ClassifyStatus sorts err, the failure of a request answered with HTTP
// status code, into retryable (408, 5xx, and anything unexpected) or
// permanent (other 4xx: the request itself is wrong or not allowed, and
// sending it again changes nothing). Rate limits are the caller's to
// recognise first.
func ClassifyStatus(code int, err error) error {
	switch {
	case code == http.StatusRequestTimeout || code >= 500:
		return err
	case code >= 400:
		return fmt.Errorf("%w: %w", ErrPermanent, err)
	default:
		return err
	}
}

// ShortSHA abbreviates a commit SHA for messages.
func ShortSHA(sha string) string {
	if len(sha) > 12 {
		return sha[:12]
	}
	return sha
}

// CheckToken refuses a token that net/http would reject anyway, with an
// error that is easy to misread: one with spaces or control characters
// (a token file's stray newline is trimmed before).
func CheckToken(token string) error {
	if strings.IndexFunc(token, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0 {
		return errors.New("token contains whitespace or control characters")
	}
	return nil
}

// ParseBaseURL checks a forge's API base URL: http or https, a host, and
// no credentials (those belong in a token, kept out of logs). The path
// ends in "/".
func ParseBaseURL(base string) (*url.URL, error) {
	u, err := url.Parse(base)
	if err != nil {
		// url.Parse quotes the input; a base URL is not secret.
		return nil, fmt.Errorf("base URL: %w", err)
	}
	if u.Scheme != "https" && u.Scheme != "http" || u.Host == "" {
		return nil, fmt.Errorf("base URL %q: want http(s)://host/", base)
	}
	if u.User != nil {
		return nil, errors.New("base URL must not contain credentials")
	}
	if !strings.HasSuffix(u.Path, "/") {
		u.Path += "/"
	}
	return u, nil
}
