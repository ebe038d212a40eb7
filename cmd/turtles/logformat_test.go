package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// printOnly are the commands that print what they are asked and log
// nothing: they have no log to format.
var printOnly = map[string]bool{
	"turtles config check":   true,
	"turtles results flakes": true,
	"turtles triage stats":   true,
	"turtles status":         true,
	"turtles version":        true,
}

// TestEveryCommandTakesLogFormat: a log collector reads the JSON of every
// command that logs, so each takes --log-format.
func TestEveryCommandTakesLogFormat(t *testing.T) {
	var walk func(c *cobra.Command)
	n := 0
	walk = func(c *cobra.Command) {
		if c.Runnable() && !printOnly[c.CommandPath()] {
			n++
			if c.Flags().Lookup("log-format") == nil {
				t.Errorf("%s has no --log-format", c.CommandPath())
			}
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(rootCmd())
	if n < 20 {
		t.Errorf("walked %d commands that log, want the 20 or more turtles has", n)
	}
}

// TestLogFormat: json writes one JSON object per record, with the time,
// level, message and attributes; text writes key=value; the level holds
// in both.
func TestLogFormat(t *testing.T) {
	for _, format := range []string{"json", "text"} {
		t.Run(format, func(t *testing.T) {
			s := defaults()
			s.LogFormat, s.LogLevel = format, "info"
			var buf bytes.Buffer
			log := newLogger(s, &buf).With("part", "bot")
			log.Debug("not shown")
			log.Info("task claimed", "task", `octo/hello@abc:unit "quoted"`, "attempt", 2)
			log.Warn("heartbeat failed", "err", errors.New("connection refused"))
			lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
			if len(lines) != 2 {
				t.Fatalf("%d lines, want 2 (info and warn):\n%s", len(lines), buf.String())
			}
			for i, want := range []map[string]any{
				{"level": "INFO", "msg": "task claimed", "part": "bot", "task": `octo/hello@abc:unit "quoted"`, "attempt": 2.0},
				{"level": "WARN", "msg": "heartbeat failed", "part": "bot", "err": "connection refused"},
			} {
				var got map[string]any
				err := json.Unmarshal([]byte(lines[i]), &got)
				if format == "text" {
					if err == nil || !strings.Contains(lines[i], "level="+want["level"].(string)) {
						t.Errorf("text line %q: want key=value, not JSON", lines[i])
					}
					continue
				}
				if err != nil {
					t.Fatalf("line %q is not JSON: %v", lines[i], err)
				}
				if _, ok := got["time"]; !ok {
					t.Errorf("line %q has no time", lines[i])
				}
				for k, v := range want {
					if got[k] != v {
						t.Errorf("line %q: %s = %v, want %v", lines[i], k, got[k], v)
					}
				}
			}
		})
	}
}
