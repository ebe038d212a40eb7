package vm

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"path/filepath"
	"syscall"
	"time"
)

// lanSocket is where QEMU listens for the switch of AddLAN's card.
const lanSocket = "lan.sock"

// AddLAN plugs a second network card into the running machine (QMP
// netdev_add and device_add: hot-plugged, so that a warm start's saved
// device set, shared by every machine of its image and shape, stays the
// same). Its frames go over a unix socket in the machine's directory
// where QEMU listens (the "stream" netdev) for the switch that carries
// them (vnet), which connects with DialLAN. The card gets a MAC of its
// own, returned and recorded in the machine's state; the guest sees a
// new virtio network card and configures nothing by itself.
func (m *Machine) AddLAN(ctx context.Context) (string, error) {
	q, err := DialQMP(ctx, filepath.Join(m.Dir, qmpSocket))
	if err != nil {
		return "", fmt.Errorf("vm %s: add a network card: %w", m.Name, err)
	}
	defer q.Close()
	// The path is relative to qemu's working directory, the machine's:
	// socket addresses are limited to 108 bytes.
	if _, err := q.Execute(ctx, "netdev_add", map[string]any{
		"type": "stream", "id": "lan", "server": true,
		"addr": map[string]any{"type": "unix", "path": lanSocket},
	}); err != nil {
		return "", fmt.Errorf("vm %s: add a network card: %w", m.Name, err)
	}
	mac := newMAC()
	if _, err := q.Execute(ctx, "device_add", map[string]any{
		"driver": "virtio-net-pci", "id": "lan0", "netdev": "lan", "mac": mac,
	}); err != nil {
		return "", fmt.Errorf("vm %s: add a network card: %w", m.Name, err)
	}
	m.LANMAC = mac
	if err := m.writeState(); err != nil {
		return "", err
	}
	return mac, nil
}

// DialLAN connects to the socket of the card AddLAN plugged in: what
// comes out is the frames the guest sends, what goes in it receives.
// QEMU listens in the background after netdev_add returns: until it
// does, the socket is missing or refuses, and DialLAN tries again until
// ctx ends.
func (m *Machine) DialLAN(ctx context.Context) (net.Conn, error) {
	for {
		c, err := dialUnix(ctx, filepath.Join(m.Dir, lanSocket))
		if err == nil {
			return c, nil
		}
		if !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, syscall.ECONNREFUSED) {
			return nil, fmt.Errorf("vm %s: connect to its network card: %w", m.Name, err)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("vm %s: connect to its network card: %w (%v)", m.Name, ctx.Err(), err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}
