package main

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ensureRegistry returns the address of the registry on the host's
// loopback port, starting `turtles registry serve` in a session of its
// own (it outlives this command and the cluster) unless a registry
// answers there already.
func ensureRegistry(s Settings, port int) (string, error) {
	if port < 1 || port > 65535 {
		return "", fmt.Errorf("--registry-port %d: want 1..65535", port)
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	if isRegistry(addr) {
		return addr, nil
	}
	self, err := os.Executable()
	if err != nil {
		return "", err
	}
	dir := filepath.Join(s.DataDir, "registry")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	logf, err := os.OpenFile(filepath.Join(s.DataDir, "registry.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return "", err
	}
	defer logf.Close()
	c := exec.Command(self, "registry", "serve", "--listen", addr, "--dir", dir, "--data-dir", s.DataDir)
	c.Stderr = logf
	out, err := c.StdoutPipe()
	if err != nil {
		return "", err
	}
	c.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := c.Start(); err != nil {
		return "", err
	}
	go c.Wait()
	ready := make(chan error, 1)
	go func() {
		line, err := bufio.NewReader(out).ReadString('\n')
		if err == nil && strings.TrimSpace(line) != addr {
			err = fmt.Errorf("it said %q", line)
		}
		ready <- err
	}()
	select {
	case err := <-ready:
		if err != nil {
			c.Process.Kill()
			return "", fmt.Errorf("start the registry on %s: %w (its log: %s)", addr, err, logf.Name())
		}
	case <-time.After(30 * time.Second):
		c.Process.Kill()
		return "", fmt.Errorf("start the registry on %s: no answer in 30s (its log: %s)", addr, logf.Name())
	}
	return addr, nil
}

// isRegistry reports whether an OCI registry answers at addr.
func isRegistry(addr string) bool {
	cl := &http.Client{Timeout: 2 * time.Second}
	resp, err := cl.Get("http://" + addr + "/v2/")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}
