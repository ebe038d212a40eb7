//go:build ignore

// Command pause is the sandbox process of every pod on a turtles
// Kubernetes node: it holds the pod's namespaces, reaps the orphans it
// inherits as PID 1 and exits on SIGINT or SIGTERM. Built into an image
// by package kubernetes, never pulled.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for s := range sigs {
		if s != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			var ws syscall.WaitStatus
			if pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil); pid <= 0 || err != nil {
				break
			}
		}
	}
}
