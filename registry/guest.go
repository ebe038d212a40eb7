package registry

import (
	"fmt"
	"strconv"
)

// Where the guests of a cluster reach the registry: the name GuestName
// (write HostsLine into their /etc/hosts, or serve it from the cluster's
// DNS) at GuestAddr, port GuestPort, which QEMU's user-mode network
// forwards to the registry on the host (GuestForward). The registry
// speaks plain HTTP: a container runtime in a guest must be told that
// registry:5000 is an insecure registry.
const (
	GuestName = "registry"
	// GuestAddr is an address in the user-mode network's 10.0.2.0/24
	// that QEMU does not use itself (it takes .2 for the host, .3 for
	// DNS and hands out .15 and up by DHCP).
	GuestAddr = "10.0.2.100"
	GuestPort = 5000
	// HostFromGuest is the host's loopback as a guest reaches it on
	// QEMU's user-mode network: a registry on the host's 127.0.0.1:PORT
	// is HostFromGuest:PORT to the guest, with no forward.
	HostFromGuest = "10.0.2.2"
)

// GuestRef is how guests name the registry in image references:
// "registry:5000", as in "registry:5000/etcd:3.5".
func GuestRef() string { return GuestName + ":" + strconv.Itoa(GuestPort) }

// HostsLine is the /etc/hosts line that makes GuestName resolve to
// GuestAddr in a guest.
func HostsLine() string { return GuestAddr + " " + GuestName }

// ForwardCommand is the program QEMU runs for each guest connection to
// GuestAddr:GuestPort, with the connection on its standard input and
// output: socat joins it to the registry on the host's port.
func ForwardCommand(hostPort int) string {
	return fmt.Sprintf("socat - TCP:127.0.0.1:%d", hostPort)
}

// GuestForward is the option to add to a machine's user-mode netdev
// (-netdev user,id=n0,...,GUESTFORWARD) so that the guest's connections to
// GuestAddr:GuestPort reach the registry on the host's hostPort. It is the
// cmd: form, one socat per connection; the chardev form (…-tcp:HOST:PORT)
// would connect once, when QEMU starts, and carry one connection at a
// time. It has no comma, so it needs no QEMU option escaping.
func GuestForward(hostPort int) string {
	return fmt.Sprintf("guestfwd=tcp:%s:%d-cmd:%s", GuestAddr, GuestPort, ForwardCommand(hostPort))
}
