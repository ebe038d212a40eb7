package config

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/turtles-ci/turtles"
)

// hostRe is a machine's name: a host name of at most 32 characters.
var hostRe = regexp.MustCompile(`^[a-z]([a-z0-9-]{0,30}[a-z0-9])?$`)

// validateMachines checks a context's machines: each names an image the
// bots have, sizes within the limits, names that are host names used
// once (node01, node02.. are the machines' second names, in order).
func (x *Context) validateMachines() error {
	seen := map[string]bool{}
	for i := range x.Machines {
		seen[fmt.Sprintf("node%02d", i+1)] = true
	}
	for i, m := range x.Machines {
		what := fmt.Sprintf("machine %d", i+1)
		if m.Name != "" {
			what = fmt.Sprintf("machine %q", m.Name)
		}
		alias := fmt.Sprintf("node%02d", i+1)
		switch {
		case m.Image == "":
			return fmt.Errorf("%s has no image", what)
		case !imageNameRe.MatchString(m.Image) || strings.Contains(m.Image, ".."):
			return fmt.Errorf("%s: bad image name %q: use the name of an image the bots have, such as debian-12", what, m.Image)
		case m.Name != "" && m.Name != alias && !hostRe.MatchString(m.Name):
			return fmt.Errorf("%s: bad name: use lowercase letters, digits and - (a host name of at most 32)", what)
		case m.Name != "" && m.Name != alias && seen[m.Name]:
			return fmt.Errorf("%s: the name is used twice (node01, node02.. name the machines in order)", what)
		case m.CPUs < 0 || m.CPUs > MaxCPUs:
			return fmt.Errorf("%s: cpus %d out of range 1..%d", what, m.CPUs, MaxCPUs)
		case m.Memory != 0 && (m.Memory < MinMemory || m.Memory > MaxMemory):
			return fmt.Errorf("%s: memory %dM out of range %dM..%dM", what, m.Memory, MinMemory, MaxMemory)
		case len(m.Forward) > MaxForwards:
			return fmt.Errorf("%s: %d forwarded ports, at most %d", what, len(m.Forward), MaxForwards)
		}
		for _, p := range m.Forward {
			if p < 1 || p > 65535 {
				return fmt.Errorf("%s: forward: port %d out of range 1..65535", what, p)
			}
		}
		seen[m.Name] = true
	}
	return nil
}

// providerRe is a cluster provider's name; the bot knows which exist.
var providerRe = regexp.MustCompile(`^[a-z][a-z0-9-]{0,30}$`)

// validate checks a context's cluster (nil is none).
func (c *Cluster) validate() error {
	switch {
	case c == nil:
		return nil
	case !providerRe.MatchString(c.Provider):
		return fmt.Errorf("provider %q: want the name of one, such as kubernetes", c.Provider)
	case c.Nodes < 1 || c.Nodes > MaxMachines:
		return fmt.Errorf("nodes %d out of range 1..%d", c.Nodes, MaxMachines)
	case c.CPUs < 0 || c.CPUs > MaxCPUs:
		return fmt.Errorf("cpus %d out of range 1..%d", c.CPUs, MaxCPUs)
	case c.Memory != 0 && (c.Memory < MinMemory || c.Memory > MaxMemory):
		return fmt.Errorf("memory %dM out of range %dM..%dM", c.Memory, MinMemory, MaxMemory)
	}
	return nil
}

// Machines are the cluster's nodes as a task's machines: unnamed
// (node01..), of ClusterImage.
func (c *Cluster) Machines() []turtles.Machine {
	ms := make([]turtles.Machine, c.Nodes)
	for i := range ms {
		ms[i] = turtles.Machine{Image: ClusterImage, CPUs: c.CPUs, MemoryMB: int(c.Memory)}
	}
	return ms
}
