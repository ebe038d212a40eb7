package config

import (
	"fmt"
	"regexp"
	"strings"
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
