// Command bench runs turtles' named benchmarks against real components:
//
//	go run ./bench NAME...   run the named benchmarks
//	go run ./bench all       run every benchmark
//
// Each benchmark lives in its own file and registers itself in init; it
// ends by printing exactly one line
//
//	bench NAME: VALUE UNIT (goal: OP GOAL)
//
// which docs/benchmarks.md quotes. The command exits non-zero on an unknown
// name or a benchmark that fails to run. Nothing imports this package.
package main

import (
	"context"
	"fmt"
	"maps"
	"os"
	"os/signal"
	"slices"
	"strings"
)

// benchmarks maps a name to its function, which prints its result line.
var benchmarks = map[string]func(ctx context.Context) error{}

// register adds a benchmark; called from init in each benchmark's file.
func register(name string, fn func(ctx context.Context) error) {
	if _, ok := benchmarks[name]; ok {
		panic("bench: duplicate benchmark " + name)
	}
	benchmarks[name] = fn
}

// result prints the one result line every benchmark ends with.
func result(name, value, unit, goal string) {
	fmt.Printf("bench %s: %s %s (goal: %s)\n", name, value, unit, goal)
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	os.Exit(run(ctx, os.Args[1:]))
}

func run(ctx context.Context, args []string) int {
	known := slices.Sorted(maps.Keys(benchmarks))
	if len(args) == 0 {
		fmt.Fprintf(os.Stderr, "usage: bench NAME... | all\nbenchmarks: %s\n", strings.Join(known, ", "))
		return 2
	}
	names := args
	if len(args) == 1 && args[0] == "all" {
		names = known
	}
	for _, name := range names {
		if _, ok := benchmarks[name]; !ok {
			fmt.Fprintf(os.Stderr, "bench: unknown benchmark %q; known: %s\n", name, strings.Join(known, ", "))
			return 2
		}
	}
	code := 0
	for _, name := range names {
		if err := benchmarks[name](ctx); err != nil {
			fmt.Fprintf(os.Stderr, "bench %s: %v\n", name, err)
			code = 1
		}
	}
	return code
}
