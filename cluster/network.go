package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/turtles-ci/turtles/vm"
	"github.com/turtles-ci/turtles/vnet"
)

// join plugs n's card in, connects it to the switch when it runs in
// this process, and addresses and names n.
func (c *Cluster) join(ctx context.Context, n *Node, hosts string, log *slog.Logger) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	began := time.Now()
	if _, err := n.AddLAN(ctx); err != nil {
		return err
	}
	plugged := time.Since(began)
	if c.sw != nil {
		conn, err := n.DialLAN(ctx)
		if err != nil {
			return err
		}
		if err := c.sw.Attach(n.Host, conn); err != nil {
			return err
		}
	}
	connected := time.Since(began)
	out, err := n.Output(ctx, n.asRoot(configScript(n, hosts)))
	if err != nil {
		return err
	}
	log.Info("cluster: machine on the network", "machine", n.Name, "plugged", plugged.Round(time.Millisecond),
		"connected", (connected - plugged).Round(time.Millisecond), "configured", (time.Since(began) - connected).Round(time.Millisecond),
		"card_waits", strings.TrimSpace(out))
	return nil
}

// connect starts the switch when it runs elsewhere, and checks that each
// node reaches the next one's sshd by name (bash's /dev/tcp, through the
// guest's resolver): the network carries frames both ways.
func (c *Cluster) connect(ctx context.Context, cfg Config) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if cfg.Switch != nil {
		dirs := make([]string, len(c.Nodes))
		for i, n := range c.Nodes {
			dirs[i] = n.Dir
		}
		if err := cfg.Switch(ctx, dirs); err != nil {
			return fmt.Errorf("start the switch: %w", err)
		}
	}
	if len(c.Nodes) < 2 {
		return nil
	}
	began := time.Now()
	defer func() {
		cfg.Log.Info("cluster: each reached the next by name", "cluster", c.Name, "after", time.Since(began).Round(time.Millisecond))
	}()
	return c.Each(ctx, func(ctx context.Context, n *Node) error {
		next := c.Nodes[0]
		for i, m := range c.Nodes {
			if m == n && i+1 < len(c.Nodes) {
				next = c.Nodes[i+1]
			}
		}
		_, err := n.Output(ctx, Reach(next.Host, 22, 30*time.Second))
		return err
	})
}

// Reach is a guest shell command that waits up to timeout until a TCP
// connection to host:port, host resolved as every program resolves it,
// opens; it fails after that. It needs only bash.
func Reach(host string, port int, timeout time.Duration) string {
	script := fmt.Sprintf(`end=$(($(date +%%s)+%d))
until timeout 5 bash -c 'exec 3<>/dev/tcp/%s/%d' 2>/dev/null; do
	if [ "$(date +%%s)" -ge "$end" ]; then echo "cannot reach %s:%d: $(getent hosts %s)" >&2; exit 1; fi
	sleep 0.2
done`, int(timeout.Seconds()), host, port, host, port, host)
	return "bash -c " + vm.Quote(script)
}

// configScript addresses the card with the node's LAN MAC, names the
// node and writes the hosts block. Shell builtins but one ip: a guest
// that was just restored, among others on a loaded host, takes a good
// part of a second per process under TCG.
func configScript(n *Node, hosts string) string {
	return fmt.Sprintf(`set -eu
mac=%s
dev=
i=0
while [ $i -lt 300 ]; do
	for d in /sys/class/net/*; do
		read -r a < "$d/address" || continue
		if [ "$a" = "$mac" ]; then dev=${d##*/}; break 2; fi
	done
	i=$((i+1))
	sleep 0.1
done
if [ -z "$dev" ]; then echo "no network card with address $mac appeared" >&2; exit 1; fi
printf 'addr add %s/%d dev %%s\nlink set %%s up\n' "$dev" "$dev" | ip -batch -
echo %s > /proc/sys/kernel/hostname
echo %s > /etc/hostname
printf '%%s\n' '127.0.0.1	localhost' '::1	localhost ip6-localhost ip6-loopback' '127.0.1.1	%s' > /etc/hosts.new
printf '%%s' %s >> /etc/hosts.new
mv /etc/hosts.new /etc/hosts
echo "$i"
`, n.LANMAC, n.Addr, Subnet.Bits(), n.Host, n.Host, n.Host, vm.Quote(hosts))
}

// asRoot runs a shell script as root: directly when the node's user is
// root, else through sudo.
func (n *Node) asRoot(script string) string {
	if n.User == "root" {
		return "sh -c " + vm.Quote(script)
	}
	return "sudo -n sh -c " + vm.Quote(script)
}

// Each runs f on every node at once and returns the first error, the
// node named.
func (c *Cluster) Each(ctx context.Context, f func(context.Context, *Node) error) error {
	var wg sync.WaitGroup
	errs := make([]error, len(c.Nodes))
	for i, n := range c.Nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(ctx, n); err != nil {
				errs[i] = fmt.Errorf("machine %s: %w", n.Host, err)
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Serve runs a switch between the cards of the machines in dirs (their
// directories, after AddLAN) until every machine is gone or ctx ends:
// the switch of `turtles cluster`, in a process of its own. ready, if
// set, is called once every card is connected.
func Serve(ctx context.Context, dirs []string, ready func(), log *slog.Logger) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	sw := vnet.New(log)
	defer sw.Close()
	for _, d := range dirs {
		m, err := vm.Attach(filepath.Dir(d), filepath.Base(d))
		if err != nil {
			return err
		}
		conn, err := m.DialLAN(ctx)
		if err != nil {
			return err
		}
		if err := sw.Attach(filepath.Base(d), conn); err != nil {
			return err
		}
	}
	if ready != nil {
		ready()
	}
	select {
	case <-sw.Empty():
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
