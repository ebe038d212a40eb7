// Package attack is the suite of attacks on turtles: each test plays an
// attacker against the real binary (or the real handler, where a process
// boundary is not the point) and passes only when the attack fails. The
// suite prints how many attacks it tried and how many held, last.
// docs/trust.md lists them.
package attack

import (
	"fmt"
	"os"
	"sort"
	"sync"
	"testing"

	"github.com/turtles-ci/turtles/e2e"
)

var (
	mu      sync.Mutex
	attacks = map[string]*testing.T{}
)

// attack counts t as one attack, described for the summary; it holds when
// t passes.
func attack(t *testing.T, what string) {
	t.Helper()
	mu.Lock()
	defer mu.Unlock()
	if _, dup := attacks[what]; dup {
		t.Fatalf("two attacks are called %q", what)
	}
	attacks[what] = t
}

func TestMain(m *testing.M) {
	code := e2e.Run(m)
	fmt.Println(summary())
	os.Exit(code)
}

// summary lists each attack tried and whether it held, then the count.
func summary() string {
	mu.Lock()
	defer mu.Unlock()
	names := make([]string, 0, len(attacks))
	for n := range attacks {
		names = append(names, n)
	}
	sort.Strings(names)
	held := 0
	out := ""
	for _, n := range names {
		verdict := "held"
		if attacks[n].Failed() {
			verdict = "NOT HELD"
		} else if attacks[n].Skipped() {
			verdict = "NOT TRIED (skipped)"
		} else {
			held++
		}
		out += fmt.Sprintf("attack %-70s %s\n", n, verdict)
	}
	return out + fmt.Sprintf("%d attacks tried, %d held", len(names), held)
}
