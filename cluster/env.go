package cluster

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// Env describes the cluster to a command beside it (host mode, `turtles
// cluster env`), with key the path of the private key it is to use:
//
//	TURTLES_MACHINES                  the machines' host names, in order
//	TURTLES_MACHINE_<NAME>_ADDR       its address on the private network
//	TURTLES_MACHINE_<NAME>_ALIAS      nodeNN
//	TURTLES_MACHINE_<NAME>_SSH_HOST   127.0.0.1
//	TURTLES_MACHINE_<NAME>_SSH_PORT   its forwarded SSH port
//	TURTLES_MACHINE_<NAME>_SSH_USER
//	TURTLES_MACHINE_<NAME>_SSH_KEY    key (the same for all)
//	TURTLES_MACHINE_<NAME>_PORT_<P>   where its guest port P is forwarded
//
// NAME is the host name in upper case with - as _. The first machine is
// also described by the single VM's variables (TURTLES_VM_NAME,
// TURTLES_VM_SSH_HOST, ...), as VMEnv says, and the provider adds its own.
func (c *Cluster) Env(key string) []string {
	var env, hosts []string
	for _, n := range c.Nodes {
		hosts = append(hosts, n.Host)
	}
	env = append(env, "TURTLES_MACHINES="+strings.Join(hosts, " "))
	for _, n := range c.Nodes {
		p := "TURTLES_MACHINE_" + EnvName(n.Host) + "_"
		env = append(env,
			p+"ADDR="+n.Addr.String(),
			p+"ALIAS="+n.Alias,
			p+"SSH_HOST=127.0.0.1",
			p+"SSH_PORT="+strconv.Itoa(n.SSHPort),
			p+"SSH_USER="+n.User,
			p+"SSH_KEY="+key,
		)
		for _, g := range sortedPorts(n.Ports) {
			env = append(env, fmt.Sprintf("%sPORT_%d=%d", p, g, n.Ports[g]))
		}
	}
	if len(c.Nodes) > 0 {
		n := c.Nodes[0]
		env = append(env,
			"TURTLES_VM_NAME="+n.Name,
			"TURTLES_VM_SSH_HOST=127.0.0.1",
			"TURTLES_VM_SSH_PORT="+strconv.Itoa(n.SSHPort),
			"TURTLES_VM_SSH_USER="+n.User,
			"TURTLES_VM_SSH_KEY="+key,
		)
		for _, g := range sortedPorts(n.Ports) {
			env = append(env, fmt.Sprintf("TURTLES_VM_PORT_%d=%d", g, n.Ports[g]))
		}
	}
	if c.Provider != nil {
		env = append(env, c.Provider.Env(c)...)
	}
	return env
}

// EnvName is a host name as it appears in variable names: upper case,
// - as _.
func EnvName(host string) string {
	return strings.ToUpper(strings.ReplaceAll(host, "-", "_"))
}

func sortedPorts(ports map[int]int) []int {
	var guest []int
	for g := range ports {
		guest = append(guest, g)
	}
	sort.Ints(guest)
	return guest
}
