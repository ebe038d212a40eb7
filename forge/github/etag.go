package github

import (
	"bytes"
	"io"
	"net/http"
	"sync"
)

// maxCached bounds the responses etagCache keeps; past it, an arbitrary
// one is forgotten (it costs one full request later, nothing more).
const maxCached = 4096

// etagCache is an http.RoundTripper that makes GET requests conditional:
// it remembers each answer's ETag and body, sends If-None-Match next time
// and turns a 304 back into the remembered answer. GitHub does not count
// 304 answers against the rate limit, so polling an unchanged repository
// is nearly free.
type etagCache struct {
	next http.RoundTripper

	mu      sync.Mutex
	entries map[string]cached
}

type cached struct {
	etag   string
	header http.Header
	body   []byte
}

func newETagCache(next http.RoundTripper) *etagCache {
	if next == nil {
		next = http.DefaultTransport
	}
	return &etagCache{next: next, entries: map[string]cached{}}
}

func (c *etagCache) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method != http.MethodGet || req.Header.Get("If-None-Match") != "" {
		return c.next.RoundTrip(req)
	}
	key := req.URL.String()
	c.mu.Lock()
	e, ok := c.entries[key]
	c.mu.Unlock()
	if ok {
		req = req.Clone(req.Context())
		req.Header.Set("If-None-Match", e.etag)
	}
	resp, err := c.next.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	switch {
	case ok && resp.StatusCode == http.StatusNotModified:
		resp.Body.Close()
		h := e.header.Clone()
		// The 304's own rate-limit headers are the current ones.
		for k, v := range resp.Header {
			h[k] = v
		}
		return &http.Response{
			Status: "200 OK", StatusCode: http.StatusOK, Proto: resp.Proto, ProtoMajor: resp.ProtoMajor, ProtoMinor: resp.ProtoMinor,
			Header: h, Body: io.NopCloser(bytes.NewReader(e.body)), ContentLength: int64(len(e.body)), Request: resp.Request,
		}, nil
	case resp.StatusCode == http.StatusOK && resp.Header.Get("ETag") != "":
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return nil, err
		}
		c.mu.Lock()
		if len(c.entries) >= maxCached {
			for k := range c.entries {
				delete(c.entries, k)
				break
			}
		}
		c.entries[key] = cached{etag: resp.Header.Get("ETag"), header: resp.Header.Clone(), body: body}
		c.mu.Unlock()
		resp.Body = io.NopCloser(bytes.NewReader(body))
		return resp, nil
	}
	return resp, nil
}
