package cache

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/turtles-ci/turtles/store"
)

// Source is a place images are fetched from: a mirror or a peer.
type Source interface {
	// String names the source in logs and metrics.
	String() string
	// Stat checks that the source has name; fs.ErrNotExist (wrapped) if
	// it does not. It is the latency probe.
	Stat(ctx context.Context, name string) error
	// Open reads name from offset on. start is where the reader really
	// begins (0 when the source cannot seek); total is the file's size,
	// or -1. fs.ErrNotExist (wrapped) if the file is missing.
	Open(ctx context.Context, name string, offset int64) (r io.ReadCloser, start, total int64, err error)
}

// HTTP is a source over HTTP(S): a directory URL under which the cache's
// files lie, such as a peer's `turtles image serve` (BASE/images/) or a
// static mirror.
type HTTP struct {
	Base   *url.URL
	Client *http.Client // default: DefaultClient
}

// DefaultClient bounds connecting and waiting for headers, not bodies:
// images are large, and a stalled body is caught by the fetcher.
var DefaultClient = &http.Client{Transport: &http.Transport{
	Proxy:                 http.ProxyFromEnvironment,
	DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
	TLSHandshakeTimeout:   10 * time.Second,
	ResponseHeaderTimeout: 30 * time.Second,
	MaxIdleConnsPerHost:   4,
	IdleConnTimeout:       90 * time.Second,
	ForceAttemptHTTP2:     false, // HTTP/1.1 streams one file faster
}}

// NewHTTP returns a source for base, an http:// or https:// URL.
func NewHTTP(base string) (*HTTP, error) {
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
		return nil, fmt.Errorf("image source %q: want http(s)://HOST/PATH/ without credentials", base)
	}
	if !strings.HasSuffix(u.Path, "/") {
		u.Path += "/"
	}
	return &HTTP{Base: u}, nil
}

func (h *HTTP) String() string { return h.Base.Redacted() }

func (h *HTTP) client() *http.Client {
	if h.Client != nil {
		return h.Client
	}
	return DefaultClient
}

func (h *HTTP) url(name string) string { return h.Base.JoinPath(name).String() }

// Stat implements Source with a HEAD request.
func (h *HTTP) Stat(ctx context.Context, name string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodHead, h.url(name), nil)
	if err != nil {
		return err
	}
	resp, err := h.client().Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	return statusError(name, resp)
}

func statusError(name string, resp *http.Response) error {
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return fmt.Errorf("%s: %w", name, fs.ErrNotExist)
	case resp.StatusCode/100 != 2:
		return fmt.Errorf("%s: %s", name, resp.Status)
	}
	return nil
}

// Open implements Source with a GET, ranged from offset.
func (h *HTTP) Open(ctx context.Context, name string, offset int64) (io.ReadCloser, int64, int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.url(name), nil)
	if err != nil {
		return nil, 0, 0, err
	}
	if offset > 0 {
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-", offset))
	}
	resp, err := h.client().Do(req)
	if err != nil {
		return nil, 0, 0, err
	}
	if resp.StatusCode == http.StatusRequestedRangeNotSatisfiable {
		// The part is as long as the file (or longer): start afresh.
		resp.Body.Close()
		return h.Open(ctx, name, 0)
	}
	if err := statusError(name, resp); err != nil {
		resp.Body.Close()
		return nil, 0, 0, err
	}
	if resp.StatusCode != http.StatusPartialContent {
		return resp.Body, 0, resp.ContentLength, nil
	}
	start, total, err := contentRange(resp.Header.Get("Content-Range"))
	if err != nil {
		resp.Body.Close()
		return nil, 0, 0, fmt.Errorf("%s: %w", name, err)
	}
	return resp.Body, start, total, nil
}

// contentRange parses "bytes START-END/TOTAL" (TOTAL may be "*").
func contentRange(v string) (start, total int64, err error) {
	rest, ok := strings.CutPrefix(v, "bytes ")
	rng, size, ok2 := strings.Cut(rest, "/")
	first, _, ok3 := strings.Cut(rng, "-")
	if !ok || !ok2 || !ok3 {
		return 0, 0, fmt.Errorf("bad Content-Range %q", v)
	}
	if start, err = strconv.ParseInt(first, 10, 64); err != nil || start < 0 {
		return 0, 0, fmt.Errorf("bad Content-Range %q", v)
	}
	total = -1
	if size != "*" {
		if total, err = strconv.ParseInt(size, 10, 64); err != nil || total < start {
			return 0, 0, fmt.Errorf("bad Content-Range %q", v)
		}
	}
	return start, total, nil
}

// Store is a source over a store.Store, such as an S3 bucket (store/s3):
// keys are the cache's file names under the store's prefix.
type Store struct {
	Store store.Store
	Name  string // for logs, e.g. the s3:// URL
}

func (s *Store) String() string { return s.Name }

// Stat implements Source.
func (s *Store) Stat(ctx context.Context, name string) error {
	_, err := s.Store.Stat(ctx, name)
	return storeError(err)
}

// Open implements Source. Stores whose readers seek (S3 objects, files)
// resume; others start at 0.
func (s *Store) Open(ctx context.Context, name string, offset int64) (io.ReadCloser, int64, int64, error) {
	r, info, err := s.Store.Get(ctx, name)
	if err != nil {
		return nil, 0, 0, storeError(err)
	}
	if sk, ok := r.(io.Seeker); ok && offset > 0 && offset < info.Size {
		if _, err := sk.Seek(offset, io.SeekStart); err == nil {
			return r, offset, info.Size, nil
		}
	}
	return r, 0, info.Size, nil
}

func storeError(err error) error {
	if errors.Is(err, store.ErrNotExist) {
		return fmt.Errorf("%w: %w", fs.ErrNotExist, err)
	}
	return err
}

// Resolver finds the addresses of a DNS name; *net.Resolver is one.
type Resolver interface {
	LookupHost(ctx context.Context, host string) ([]string, error)
}

// Peers finds peers' image servers: every address a DNS name resolves to
// (on Kubernetes, a headless service), on one port.
type Peers struct {
	Name     string // e.g. images.turtles.svc.cluster.local
	Port     int
	Resolver Resolver // default net.DefaultResolver
	Client   *http.Client
}

// ParsePeers parses HOST or HOST:PORT; the port defaults to 8080, the
// default of `turtles image serve`.
func ParsePeers(s string) (*Peers, error) {
	host, port := s, 8080
	if h, p, err := net.SplitHostPort(s); err == nil {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return nil, fmt.Errorf("peers %q: bad port", s)
		}
		host, port = h, n
	}
	if host == "" || strings.ContainsAny(host, "/ ") {
		return nil, fmt.Errorf("peers %q: want a DNS name, optionally with :PORT", s)
	}
	return &Peers{Name: host, Port: port}, nil
}

// Sources resolves the name to one HTTP source per address.
func (p *Peers) Sources(ctx context.Context) ([]Source, error) {
	r := p.Resolver
	if r == nil {
		r = net.DefaultResolver
	}
	addrs, err := r.LookupHost(ctx, p.Name)
	if err != nil {
		return nil, fmt.Errorf("find peers %s: %w", p.Name, err)
	}
	var out []Source
	for _, a := range addrs {
		u := &url.URL{Scheme: "http", Host: net.JoinHostPort(a, strconv.Itoa(p.Port)), Path: "/images/"}
		out = append(out, &HTTP{Base: u, Client: p.Client})
	}
	return out, nil
}
