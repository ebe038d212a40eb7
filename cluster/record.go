package cluster

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/turtles-ci/turtles/vm"
)

// Record is what a kept cluster (turtles cluster up) writes down, so that
// other processes can attach to it: its machines are in the VM
// directory, detached, under the names of Record.Nodes.
type Record struct {
	Name     string       `json:"name"`
	Provider string       `json:"provider"`
	Nodes    []RecordNode `json:"nodes"`
	// SwitchPID is the process of its switch (cluster.Serve).
	SwitchPID int `json:"switch_pid,omitempty"`
	// Registry is the host address (127.0.0.1:PORT) of the registry the
	// nodes reach as registry:PORT; empty without one.
	Registry string    `json:"registry,omitempty"`
	Created  time.Time `json:"created"`
}

// RecordNode is one node of a Record.
type RecordNode struct {
	Machine  string     `json:"machine"` // its name in the VM directory
	Host     string     `json:"host"`
	Alias    string     `json:"alias"`
	Addr     netip.Addr `json:"addr"`
	CPUs     int        `json:"cpus"`
	MemoryMB int        `json:"memory_mb"`
	Image    string     `json:"image"`
}

// Record describes c, booted from machines (for their sizes).
func (c *Cluster) Record(machines []Machine) Record {
	r := Record{Name: c.Name, Provider: c.Provider.Name(), Created: time.Now().UTC()}
	for i, n := range c.Nodes {
		r.Nodes = append(r.Nodes, RecordNode{Machine: n.Name, Host: n.Host, Alias: n.Alias, Addr: n.Addr,
			CPUs: machines[i].CPUs, MemoryMB: machines[i].MemoryMB, Image: filepath.Base(n.Image)})
	}
	return r
}

// WriteRecord writes r to path atomically.
func WriteRecord(path string, r Record) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// ReadRecord reads what WriteRecord wrote.
func ReadRecord(path string) (Record, error) {
	var r Record
	b, err := os.ReadFile(path)
	if err != nil {
		return r, err
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return r, fmt.Errorf("%s: %w", path, err)
	}
	return r, nil
}

// Attach returns the cluster r records, its machines attached in vmDir
// (vm.Attach), its files in dir. Machines that are gone are left out, and ErrGone joins
// the error for each.
func Attach(r Record, vmDir, dir string) (*Cluster, error) {
	p, err := ProviderNamed(r.Provider)
	if err != nil {
		return nil, err
	}
	c := &Cluster{Name: r.Name, Dir: dir, Provider: p}
	var errs []error
	for _, rn := range r.Nodes {
		m, err := vm.Attach(vmDir, rn.Machine)
		if err != nil {
			errs = append(errs, fmt.Errorf("%w: machine %s: %v", ErrGone, rn.Host, err))
			continue
		}
		c.Nodes = append(c.Nodes, &Node{Machine: m, Host: rn.Host, Alias: rn.Alias, Addr: rn.Addr})
	}
	if len(c.Nodes) > 0 {
		c.Key, _ = os.ReadFile(c.Nodes[0].KeyFile())
	}
	return c, errors.Join(errs...)
}

// ErrGone is a machine of a cluster that no longer runs.
var ErrGone = errors.New("gone")
