package cluster

import (
	"context"
	"fmt"
	"io"
	"sort"
)

// Provider is what runs on the machines of a cluster beyond the OS: the
// seam between machines up (this package) and cluster software (plain:
// none; kubernetes: the next one).
type Provider interface {
	// Name is how configurations and flags name it.
	Name() string
	// Prepare runs before any machine boots and returns the machines to
	// boot: it may replace their images with provisioned ones (named by
	// sha256 and cached, so that a second cluster only boots), add
	// forwarded ports (an API server's), or refuse sizes that cannot run
	// its software. Its errors are returned by Up as they are: an infra
	// Fault when provisioning failed, a plain error for a bad request.
	Prepare(ctx context.Context, machines []Machine, log io.Writer) ([]Machine, error)
	// Provision runs once every machine accepts SSH, has its address and
	// resolves every other by name: the cluster software, its
	// certificates (fresh per cluster), whatever Env will describe. An
	// error fails Up (an infra Fault unless it is one already) and the
	// machines are stopped.
	Provision(ctx context.Context, c *Cluster, log io.Writer) error
	// Env is what a host-mode command and `turtles cluster env` get
	// besides the machines' variables, as NAME=VALUE (a KUBECONFIG path,
	// a registry address); nil for none.
	Env(c *Cluster) []string
}

// Plain is the provider of machines and nothing more.
type Plain struct{}

func (Plain) Name() string { return "plain" }
func (Plain) Prepare(_ context.Context, m []Machine, _ io.Writer) ([]Machine, error) {
	return m, nil
}
func (Plain) Provision(context.Context, *Cluster, io.Writer) error { return nil }
func (Plain) Env(*Cluster) []string                                { return nil }

// providers are the providers known by name.
var providers = map[string]Provider{"plain": Plain{}}

// ProviderNamed returns the provider called name; "" is plain.
func ProviderNamed(name string) (Provider, error) {
	if name == "" {
		name = "plain"
	}
	p, ok := providers[name]
	if !ok {
		return nil, fmt.Errorf("no cluster provider %q: want one of %v", name, ProviderNames())
	}
	return p, nil
}

// ProviderNames lists the known providers.
func ProviderNames() []string {
	var names []string
	for n := range providers {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Register makes p known by its name to ProviderNamed and Attach: wiring,
// done once at start, before any cluster is brought up.
func Register(p Provider) { providers[p.Name()] = p }
