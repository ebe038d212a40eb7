package tap

import (
	"bytes"
	"testing"
)

func BenchmarkWrite(b *testing.B) {
	line := []byte("turtles log overhead: one line of test output, about eighty bytes long.\n")
	buf := bytes.Repeat(line, 32<<10/len(line))
	b.SetBytes(int64(len(buf)))
	p := NewParser()
	for b.Loop() {
		p.Write(buf)
	}
}
