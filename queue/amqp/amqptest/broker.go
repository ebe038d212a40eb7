// Package amqptest starts a private RabbitMQ node for tests and
// benchmarks: its own ports, node name, data directory, Erlang cookie and
// epmd, so that it never touches (or depends on) a system-wide broker.
// Starting a node costs seconds, so tests start one per test binary
// (TestMain) and share it, separating their queues by name prefix.
//
// Proxy stands between a node and its clients, to take the broker away
// from them without stopping it.
//
// Only tests and bench/ import it.
package amqptest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// serverBin is the Debian package's unwrapped start script: the wrapper in
// /usr/sbin switches to the rabbitmq user and its system-wide settings.
const serverBin = "/usr/lib/rabbitmq/bin/rabbitmq-server"

// Options configure a node. Zero values get defaults.
type Options struct {
	// ConsumerTimeout is the broker's consumer_timeout: how long a
	// delivery may stay unacked before the broker closes its channel.
	// Default 30 minutes, RabbitMQ's own default.
	ConsumerTimeout time.Duration
	// Log, if set, gets progress lines ("broker started in 4s").
	Log func(format string, args ...any)
}

// Broker is a running private node.
type Broker struct {
	// URL is the AMQP URL of the node (guest on loopback).
	URL string
	// Dir holds the node's data, logs and config; removed by Stop.
	Dir string

	opts Options
	env  []string
	epmd int
	cmd  *exec.Cmd
	exit chan error
}

// Install installs the rabbitmq-server package if it is missing, as
// scripts/deps.sh does for a fresh machine.
func Install() error {
	if _, err := os.Stat(serverBin); err == nil {
		return nil
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("%s is missing and we are not root: run scripts/deps.sh", serverBin)
	}
	for _, args := range [][]string{{"update", "-qq"}, {"install", "-y", "-qq", "-o", "DPkg::Lock::Timeout=300", "rabbitmq-server"}} {
		cmd := exec.Command("apt-get", args...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("apt-get %s: %w\n%s", strings.Join(args, " "), err, out)
		}
	}
	// The package starts a system-wide node where it can (systemd); we
	// never use it, and it does not disturb ours (other ports, other epmd).
	return nil
}

// Start installs RabbitMQ if needed and starts a private node, returning
// once it accepts AMQP connections.
func Start(opts Options) (*Broker, error) {
	if opts.ConsumerTimeout <= 0 {
		opts.ConsumerTimeout = 30 * time.Minute
	}
	if opts.Log == nil {
		opts.Log = func(string, ...any) {}
	}
	if err := Install(); err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "turtles-rabbitmq-")
	if err != nil {
		return nil, err
	}
	b := &Broker{Dir: dir, opts: opts}
	if err := b.configure(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	if err := b.start(); err != nil {
		b.Stop()
		return nil, err
	}
	return b, nil
}

func (b *Broker) configure() error {
	ports, err := freePorts(3)
	if err != nil {
		return err
	}
	amqpPort, distPort := ports[0], ports[1]
	b.epmd = ports[2]
	var r [6]byte
	rand.Read(r[:])
	node := "turtles-test-" + hex.EncodeToString(r[:]) + "@localhost"
	conf := fmt.Sprintf(`listeners.tcp.default = 127.0.0.1:%d
loopback_users.guest = true
consumer_timeout = %d
disk_free_limit.absolute = 50MB
log.console = false
log.file.level = info
`, amqpPort, b.opts.ConsumerTimeout.Milliseconds())
	files := map[string]string{
		"rabbitmq.conf":     conf,
		"enabled_plugins":   "[].\n",
		"rabbitmq-env.conf": "", // shadows /etc/rabbitmq/rabbitmq-env.conf
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(b.Dir, name), []byte(body), 0o600); err != nil {
			return err
		}
	}
	b.env = append(os.Environ(),
		"HOME="+b.Dir, // the Erlang cookie
		"RABBITMQ_CONF_ENV_FILE="+filepath.Join(b.Dir, "rabbitmq-env.conf"),
		"RABBITMQ_CONFIG_FILE="+filepath.Join(b.Dir, "rabbitmq.conf"),
		"RABBITMQ_ENABLED_PLUGINS_FILE="+filepath.Join(b.Dir, "enabled_plugins"),
		"RABBITMQ_MNESIA_BASE="+filepath.Join(b.Dir, "mnesia"),
		"RABBITMQ_LOG_BASE="+filepath.Join(b.Dir, "log"),
		"RABBITMQ_PID_FILE="+filepath.Join(b.Dir, "pid"),
		"RABBITMQ_NODENAME="+node,
		"RABBITMQ_NODE_IP_ADDRESS=127.0.0.1",
		"RABBITMQ_NODE_PORT="+strconv.Itoa(amqpPort),
		"RABBITMQ_DIST_PORT="+strconv.Itoa(distPort),
		"RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS=-kernel inet_dist_use_interface {127,0,0,1}",
		"ERL_EPMD_PORT="+strconv.Itoa(b.epmd),
		"ERL_EPMD_ADDRESS=127.0.0.1",
	)
	b.URL = fmt.Sprintf("amqp://guest:guest@127.0.0.1:%d/", amqpPort)
	return nil
}

func (b *Broker) start() error {
	began := time.Now()
	logf, err := os.OpenFile(filepath.Join(b.Dir, "server.out"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close() // the child has its own descriptor
	cmd := exec.Command(serverBin)
	cmd.Env = b.env
	cmd.Dir = b.Dir
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", serverBin, err)
	}
	b.cmd = cmd
	b.exit = make(chan error, 1)
	go func() { b.exit <- cmd.Wait() }()
	deadline := time.Now().Add(90 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-b.exit:
			b.exit <- err
			return fmt.Errorf("rabbitmq-server exited during start: %v\n%s", err, b.tail())
		case <-time.After(200 * time.Millisecond):
		}
		c, err := amqp.DialConfig(b.URL, amqp.Config{Dial: amqp.DefaultDial(time.Second)})
		if err == nil {
			c.Close()
			b.opts.Log("broker %s started in %s (consumer_timeout %s)", b.URL, time.Since(began).Round(time.Millisecond), b.opts.ConsumerTimeout)
			return nil
		}
	}
	return fmt.Errorf("rabbitmq-server did not accept connections within 90s\n%s", b.tail())
}

// tail returns the end of the node's output and log, for errors.
func (b *Broker) tail() string {
	var out []string
	paths, _ := filepath.Glob(filepath.Join(b.Dir, "log", "*.log"))
	for _, p := range append([]string{filepath.Join(b.Dir, "server.out")}, paths...) {
		data, _ := os.ReadFile(p)
		if len(data) > 3000 {
			data = data[len(data)-3000:]
		}
		out = append(out, "== "+p+"\n"+string(data))
	}
	return strings.Join(out, "\n")
}

// stop ends the node: SIGTERM to its process group (a clean shutdown that
// keeps durable data), SIGKILL after a grace period.
func (b *Broker) stop() error {
	if b.cmd == nil {
		return nil
	}
	pgid := b.cmd.Process.Pid
	syscall.Kill(-pgid, syscall.SIGTERM)
	var err error
	select {
	case err = <-b.exit:
	case <-time.After(30 * time.Second):
		syscall.Kill(-pgid, syscall.SIGKILL)
		err = <-b.exit
	}
	syscall.Kill(-pgid, syscall.SIGKILL) // stragglers (erl_child_setup)
	b.cmd = nil
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		err = nil // killed by our signal: expected
	}
	return err
}

// Restart stops the node cleanly and starts it again on the same ports
// and data: durable queues and persistent messages survive, connections
// do not.
func (b *Broker) Restart() error {
	if err := b.stop(); err != nil {
		return fmt.Errorf("stop broker: %w", err)
	}
	return b.start()
}

// Kill stops the node abruptly (SIGKILL), as a crash would.
func (b *Broker) Kill() {
	if b.cmd != nil {
		syscall.Kill(-b.cmd.Process.Pid, syscall.SIGKILL)
		<-b.exit
		b.cmd = nil
	}
}

// Stop stops the node and its epmd and removes its directory.
func (b *Broker) Stop() error {
	err := b.stop()
	// epmd daemonizes out of the node's process group; ask it to leave.
	kill := exec.Command("epmd", "-kill")
	kill.Env = b.env
	kill.Run()
	os.RemoveAll(b.Dir)
	return err
}

// Dial connects to the node, for tests that publish raw messages.
func (b *Broker) Dial(ctx context.Context) (*amqp.Connection, error) {
	return amqp.Dial(b.URL)
}

func freePorts(n int) ([]int, error) {
	var ports []int
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("pick a free port: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
