package logpage_test

import (
	"strings"
	"testing"

	"github.com/turtles-ci/turtles/store"
	"github.com/turtles-ci/turtles/web/logpage"
)

// TestChunkLayout: the viewer follows a live log in the layout bots write
// (package store), which it cannot import.
func TestChunkLayout(t *testing.T) {
	for _, want := range []string{
		`"` + store.ChunkIndexKey(store.LogName) + `"`,
		`"` + store.LogName + store.ChunkDir + `" + String(i + 1).padStart(6, "0")`,
	} {
		if !strings.Contains(logpage.Script, want) {
			t.Errorf("the viewer does not read %s", want)
		}
	}
	if got := store.ChunkKey(store.LogName, 1); got != "log.chunks/000001" {
		t.Errorf("ChunkKey = %q: the viewer pads chunk numbers to six digits", got)
	}
}
