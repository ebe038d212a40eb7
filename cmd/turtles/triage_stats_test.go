package main

import (
	"strings"
	"testing"
	"time"

	"github.com/turtles-ci/turtles/state"
)

func TestPrintIssues(t *testing.T) {
	now := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC) // a Thursday
	this, last := state.WeekOf(now), state.WeekOf(now).AddDate(0, 0, -7)
	issues := []state.IssueStats{
		{Issue: "https://github.com/o/r/issues/5", Total: 7, Weeks: []state.WeekCount{{Week: this, Count: 5}, {Week: last, Count: 2}}, Last: now},
		{Issue: "https://x/dns", Total: 1, Weeks: []state.WeekCount{{Week: last, Count: 1}}, Last: last},
	}
	var b strings.Builder
	printIssues(&b, last, now, issues)
	got := strings.Split(strings.TrimSpace(b.String()), "\n")
	want := []string{ // fields, joined by one space; the last column is local time
		"ISSUE TOTAL Nov 30 Nov 23 LAST",
		"https://github.com/o/r/issues/5 7 5 2 " + now.Local().Format("2006-01-02 15:04"),
		"https://x/dns 1 0 1 " + last.Local().Format("2006-01-02 15:04"),
	}
	if len(got) != len(want) {
		t.Fatalf("got %d lines, want %d:\n%s", len(got), len(want), b.String())
	}
	for i, w := range want {
		if f := strings.Join(strings.Fields(got[i]), " "); f != w {
			t.Errorf("line %d = %q, want %q", i, f, w)
		}
	}
	b.Reset()
	printIssues(&b, this, now, nil)
	if !strings.Contains(b.String(), "no known issue decided a verdict since 2026-11-30") {
		t.Errorf("no issues: %q", b.String())
	}
}
