package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

// TestNewHTTPServer: the read timeout cuts a trickled body and an idle
// connection, but not a live log page that streams for longer.
func TestNewHTTPServer(t *testing.T) {
	const timeout = 300 * time.Millisecond
	s := defaults()
	s.HTTPReadTimeout, s.HTTPIdleTimeout = timeout, timeout
	mux := http.NewServeMux()
	mux.HandleFunc("POST /hook", func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.ReadAll(r.Body); err != nil {
			http.Error(w, "could not read body", http.StatusBadRequest)
		}
	})
	mux.HandleFunc("GET /ok", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok\n") })
	mux.HandleFunc("GET /log", func(w http.ResponseWriter, r *http.Request) {
		for i := range 10 { // 4 read timeouts' worth
			select {
			case <-r.Context().Done():
				return
			case <-time.After(timeout * 2 / 5):
			}
			fmt.Fprintf(w, "line %d\n", i)
			w.(http.Flusher).Flush()
		}
		io.WriteString(w, "done\n")
	})
	srv := newHTTPServer(mux, s)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	addr := ln.Addr().String()

	t.Run("live log page", func(t *testing.T) {
		resp, err := http.Get("http://" + addr + "/log")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil || !strings.HasSuffix(string(b), "done\n") {
			t.Errorf("log page streamed for longer than the read timeout: %q, %v; want it whole", b, err)
		}
	})
	// closedWithin dials, sends what send sends, and reports whether the
	// server closed the connection within d.
	closedWithin := func(t *testing.T, d time.Duration, send func(c net.Conn)) bool {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		go send(c)
		c.SetReadDeadline(time.Now().Add(d))
		_, err = io.Copy(io.Discard, c)
		return err == nil // EOF: closed by the server
	}
	t.Run("trickled body", func(t *testing.T) {
		if !closedWithin(t, timeout+time.Second, func(c net.Conn) {
			fmt.Fprintf(c, "POST /hook HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n")
			for range 100 {
				if _, err := c.Write([]byte("x")); err != nil {
					return
				}
				time.Sleep(timeout / 10)
			}
		}) {
			t.Error("a trickled body outlived the read timeout")
		}
	})
	t.Run("idle connection", func(t *testing.T) {
		if !closedWithin(t, timeout+time.Second, func(c net.Conn) {
			fmt.Fprintf(c, "GET /ok HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n")
		}) {
			t.Error("an idle connection outlived the idle timeout")
		}
	})
}

func TestHTTPSettings(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		file    string // --config contents, if any
		want    func(Settings) bool
		wantErr string
	}{
		{name: "defaults", want: func(s Settings) bool {
			return s.HTTPReadTimeout == 30*time.Second && s.HTTPIdleTimeout == 2*time.Minute &&
				s.WebhookBodyBudget == 64<<20 && s.WebhookBodyWait == time.Second && s.WebhookPublishTimeout == 5*time.Second
		}},
		{name: "publish timeout", args: []string{"--webhook-publish-timeout", "2s"}, want: func(s Settings) bool { return s.WebhookPublishTimeout == 2*time.Second }},
		{name: "no publish timeout", args: []string{"--webhook-publish-timeout", "0s"}, wantErr: "webhook-publish-timeout"},
		{name: "flags", args: []string{"--http-read-timeout", "3s", "--webhook-body-budget", "128MiB"}, want: func(s Settings) bool {
			return s.HTTPReadTimeout == 3*time.Second && s.WebhookBodyBudget == 128<<20
		}},
		{name: "budget in bytes", args: []string{"--webhook-body-budget", "67108864"}, want: func(s Settings) bool { return s.WebhookBodyBudget == 64<<20 }},
		{name: "config file", file: "webhook_body_budget: 96MiB\nhttp_idle_timeout: 1m\n", want: func(s Settings) bool {
			return s.WebhookBodyBudget == 96<<20 && s.HTTPIdleTimeout == time.Minute
		}},
		{name: "bad size", args: []string{"--webhook-body-budget", "lots"}, wantErr: "want a size"},
		{name: "no read timeout", args: []string{"--http-read-timeout", "0s"}, wantErr: "http-read-timeout"},
		{name: "negative wait", args: []string{"--webhook-body-wait", "-1s"}, wantErr: "webhook-body-wait"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"--data-dir", t.TempDir()}, tt.args...)
			if tt.file != "" {
				p := filepath.Join(t.TempDir(), "turtles.yaml")
				os.WriteFile(p, []byte(tt.file), 0o600)
				args = append(args, "--config", p)
			}
			s, err := parseSettings(func(fs *pflag.FlagSet) {
				addFlags(fs, "data-dir")
				addHTTPFlags(fs)
			}, args...)
			switch {
			case tt.wantErr != "":
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("loadSettings: %v, want an error containing %q", err, tt.wantErr)
				}
			case err != nil:
				t.Errorf("loadSettings: %v", err)
			case !tt.want(s):
				t.Errorf("settings: read %s, idle %s, budget %d, wait %s: not what %s asked for",
					s.HTTPReadTimeout, s.HTTPIdleTimeout, s.WebhookBodyBudget, s.WebhookBodyWait, tt.name)
			}
		})
	}
}
