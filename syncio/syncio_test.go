package syncio

import (
	"bytes"
	"strings"
	"sync"
	"testing"
)

// TestConcurrentWrites writes whole lines from many goroutines, as the
// copiers of a command's two outputs do, and checks that no line was torn
// or lost. Under -race, a missing lock also fails it.
func TestConcurrentWrites(t *testing.T) {
	const writers, lines = 8, 200
	var raw bytes.Buffer
	tests := []struct {
		name string
		w    interface{ Write([]byte) (int, error) }
		got  func() string
	}{
		{name: "Writer", w: NewWriter(&raw), got: raw.String},
		{name: "Buffer", w: new(Buffer)},
	}
	tests[1].got = tests[1].w.(*Buffer).String
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var wg sync.WaitGroup
			for i := range writers {
				wg.Go(func() {
					line := []byte(strings.Repeat(string(rune('a'+i)), 64) + "\n")
					for range lines {
						if n, err := tt.w.Write(line); n != len(line) || err != nil {
							t.Errorf("Write = %d, %v; want %d, nil", n, err, len(line))
						}
					}
				})
			}
			wg.Wait()
			out := tt.got()
			got := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
			if len(got) != writers*lines {
				t.Fatalf("got %d lines, want %d", len(got), writers*lines)
			}
			for i, l := range got {
				if len(l) != 64 || strings.Count(l, l[:1]) != 64 {
					t.Fatalf("line %d torn: %q", i, l)
				}
			}
		})
	}
}
