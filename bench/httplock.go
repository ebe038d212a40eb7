package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// rawLock is the dedupe lock a raw loop adds to each message.
type rawLock int

const (
	lockNone    rawLock = iota
	lockMarkers         // a marker message in the message's own lock queue
	lockHTTP            // a key taken and freed on a lock server over HTTP
)

// httpLocks is the least a lock kept outside the broker costs: a server
// on loopback holding the live keys in memory (no disk, no expiry, no
// replication: a real one would need all three), and a client that takes
// a key before its message is published and frees it before the ack, one
// round trip each.
type httpLocks struct {
	srv    *http.Server
	url    string
	client *http.Client
	mu     sync.Mutex
	held   map[string]bool
}

func startHTTPLocks() (*httpLocks, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	l := &httpLocks{url: "http://" + ln.Addr().String() + "/lock/", held: map[string]bool{},
		client: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}}
	mux := http.NewServeMux()
	mux.HandleFunc("PUT /lock/{key}", func(w http.ResponseWriter, r *http.Request) {
		l.mu.Lock()
		defer l.mu.Unlock()
		if key := r.PathValue("key"); l.held[key] {
			w.WriteHeader(http.StatusConflict)
		} else {
			l.held[key] = true
			w.WriteHeader(http.StatusNoContent)
		}
	})
	mux.HandleFunc("DELETE /lock/{key}", func(w http.ResponseWriter, r *http.Request) {
		l.mu.Lock()
		defer l.mu.Unlock()
		delete(l.held, r.PathValue("key"))
		w.WriteHeader(http.StatusNoContent)
	})
	l.srv = &http.Server{Handler: mux}
	go l.srv.Serve(ln)
	return l, nil
}

func (l *httpLocks) close() { l.srv.Close() }

func (l *httpLocks) acquire(ctx context.Context, i int) error {
	return l.call(ctx, http.MethodPut, i)
}

func (l *httpLocks) release(ctx context.Context, i int) error {
	return l.call(ctx, http.MethodDelete, i)
}

func (l *httpLocks) call(ctx context.Context, method string, i int) error {
	req, err := http.NewRequestWithContext(ctx, method, l.url+strconv.Itoa(i), nil)
	if err != nil {
		return err
	}
	resp, err := l.client.Do(req)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		return fmt.Errorf("%s lock %d: %s", method, i, resp.Status)
	}
	return nil
}
