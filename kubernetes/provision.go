package kubernetes

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/turtles-ci/turtles"
	"github.com/turtles-ci/turtles/cluster"
)

// Provision implements cluster.Provider: a fresh CA and every
// certificate, the files of every node, the control plane on node01 and
// a kubelet and kube-proxy on every node; then it waits for the API
// server, every node Ready and the cluster DNS, and writes the host's
// kubeconfig into c.Dir.
func (p *Provider) Provision(ctx context.Context, c *cluster.Cluster, out io.Writer) error {
	if c.Dir == "" {
		return errors.New("kubernetes: a cluster without a directory for its kubeconfig")
	}
	timeout := p.ReadyTimeout
	if timeout <= 0 {
		timeout = DefaultReadyTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	start := time.Now()
	files, host, err := clusterFiles(c)
	if err != nil {
		return err
	}
	admin, err := Kubeconfig(c.Name, host.server, host.ca, "turtles-admin", host.admin)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(c.Dir, 0o700); err != nil {
		return err
	}
	if err := os.WriteFile(KubeconfigPath(c.Dir), admin, 0o600); err != nil {
		return err
	}
	// Every node at once: the control plane's start is the long pole,
	// and a kubelet that starts first waits for it.
	if err := c.Each(ctx, func(ctx context.Context, n *cluster.Node) error {
		i := slices.Index(c.Nodes, n)
		return startNode(ctx, c, i, files[i])
	}); err != nil {
		return turtles.InfraFault("Kubernetes did not start on every node", err)
	}
	fmt.Fprintf(out, "turtles: Kubernetes started on %d nodes after %s\n", len(c.Nodes), time.Since(start).Round(100*time.Millisecond))
	k, err := newClient(host.server, host.ca, host.admin)
	if err != nil {
		return err
	}
	if err := k.waitAPI(ctx); err != nil {
		return turtles.InfraFault("the Kubernetes API server did not answer", p.withJournal(ctx, c, err, "kube-apiserver", "etcd"))
	}
	fmt.Fprintf(out, "turtles: the API server answers after %s\n", time.Since(start).Round(100*time.Millisecond))
	if err := k.setUp(ctx); err != nil {
		return turtles.InfraFault("the cluster's own objects could not be made", err)
	}
	if err := k.waitNodes(ctx, c, func(host string) {
		fmt.Fprintf(out, "turtles: %s Ready after %s\n", host, time.Since(start).Round(100*time.Millisecond))
	}); err != nil {
		return turtles.InfraFault("not every Kubernetes node became Ready", p.withJournal(ctx, c, err, "kubelet"))
	}
	if err := k.waitDNS(ctx); err != nil {
		return turtles.InfraFault("the cluster DNS did not start", err)
	}
	fmt.Fprintf(out, "turtles: Kubernetes %s is up: %d nodes Ready, DNS answers, after %s; KUBECONFIG=%s\n",
		Version, len(c.Nodes), time.Since(start).Round(100*time.Millisecond), KubeconfigPath(c.Dir))
	return nil
}

// withJournal adds the last lines of units' journals on node01 to err,
// for the log: why a component did not come up.
func (p *Provider) withJournal(ctx context.Context, c *cluster.Cluster, err error, units ...string) error {
	if len(c.Nodes) == 0 {
		return err
	}
	jctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 20*time.Second)
	defer cancel()
	args := ""
	for _, u := range units {
		args += " -u " + u
	}
	var b bytes.Buffer
	c.Nodes[0].Exec(jctx, "journalctl --no-pager -n 30"+args, nil, &b, &b)
	return fmt.Errorf("%w\njournal of node01 (%s):\n%s", err, strings.Join(units, ", "), b.String())
}

// startNode writes node i's files and starts its components.
func startNode(ctx context.Context, c *cluster.Cluster, i int, files map[string][]byte) error {
	t, err := tarFiles(files)
	if err != nil {
		return err
	}
	script := "set -e\ntar -C / -xf -\n" +
		"modprobe overlay; modprobe br_netfilter; sysctl -q --system >/dev/null\n" +
		routes(i, nodeAddrs(c)) +
		"systemctl start turtles-images.service\n"
	if i == 0 {
		script += "systemctl start etcd.service kube-apiserver.service kube-controller-manager.service kube-scheduler.service\n"
	}
	script += "systemctl start kubelet.service kube-proxy.service\n"
	var stderr bytes.Buffer
	code, err := c.Nodes[i].Exec(ctx, script, bytes.NewReader(t), io.Discard, &stderr)
	if err != nil {
		return err
	}
	if code != 0 {
		return fmt.Errorf("starting Kubernetes exited %d: %s", code, strings.TrimSpace(stderr.String()))
	}
	return nil
}

// hostAccess is how the host reaches a cluster's API server: through
// node01's forwarded port, as its administrator.
type hostAccess struct {
	server string
	ca     []byte
	admin  Pair
}

// clusterFiles makes the cluster's CA and every node's files, and the
// host's access.
func clusterFiles(c *cluster.Cluster) ([]map[string][]byte, hostAccess, error) {
	if len(c.Nodes) == 0 {
		return nil, hostAccess{}, errors.New("kubernetes: no nodes")
	}
	cp := c.Nodes[0]
	hostPort := cp.Ports[APIPort]
	if hostPort == 0 {
		return nil, hostAccess{}, fmt.Errorf("kubernetes: the API server's port %d of %s is not forwarded", APIPort, cp.Host)
	}
	ca, err := NewCA(c.Name)
	if err != nil {
		return nil, hostAccess{}, err
	}
	issue := func(r CertRequest) (Pair, error) { return ca.Issue(r) }
	apiserver, err := issue(CertRequest{
		CommonName: "kube-apiserver", Server: true,
		DNS: []string{"kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local",
			"localhost", cp.Host, cp.Alias},
		IPs: []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr(APIServiceIP), cp.Addr},
	})
	if err != nil {
		return nil, hostAccess{}, err
	}
	kubeletClient, err := issue(CertRequest{CommonName: "kube-apiserver-kubelet-client", Orgs: []string{"system:masters"}})
	if err != nil {
		return nil, hostAccess{}, err
	}
	sa, err := NewServiceAccountKey()
	if err != nil {
		return nil, hostAccess{}, err
	}
	caKey, err := ca.KeyPEM()
	if err != nil {
		return nil, hostAccess{}, err
	}
	inside := fmt.Sprintf("https://%s:%d", cp.Addr, APIPort)
	local := fmt.Sprintf("https://127.0.0.1:%d", APIPort)
	kubeconfig := func(server, user string, orgs ...string) ([]byte, error) {
		p, err := issue(CertRequest{CommonName: user, Orgs: orgs})
		if err != nil {
			return nil, err
		}
		return Kubeconfig(c.Name, server, ca.PEM, user, p)
	}
	adminPair, err := issue(CertRequest{CommonName: "turtles-admin", Orgs: []string{"system:masters"}})
	if err != nil {
		return nil, hostAccess{}, err
	}
	host := hostAccess{server: fmt.Sprintf("https://127.0.0.1:%d", hostPort), ca: ca.PEM, admin: adminPair}
	files := make([]map[string][]byte, len(c.Nodes))
	for i, n := range c.Nodes {
		f := map[string][]byte{
			"etc/kubernetes/node.env":           []byte(nodeEnv(n.Host, n.Addr, i == 0)),
			"etc/kubernetes/pki/ca.crt":         ca.PEM,
			"etc/cni/net.d/10-turtles.conflist": []byte(cniConfig(i)),
		}
		if f["etc/kubernetes/kubelet.conf"], err = kubeconfig(inside, "system:node:"+n.Host, "system:nodes"); err != nil {
			return nil, hostAccess{}, err
		}
		if f["etc/kubernetes/kube-proxy.conf"], err = kubeconfig(inside, "system:kube-proxy"); err != nil {
			return nil, hostAccess{}, err
		}
		if c.Registry != "" {
			f["etc/containerd/certs.d/"+c.Registry+"/hosts.toml"] = []byte(registryHosts(c.Registry, c.RegistryAuth))
		}
		if i == 0 {
			f["etc/kubernetes/pki/ca.key"] = caKey
			f["etc/kubernetes/pki/apiserver.crt"], f["etc/kubernetes/pki/apiserver.key"] = apiserver.Cert, apiserver.Key
			f["etc/kubernetes/pki/apiserver-kubelet-client.crt"] = kubeletClient.Cert
			f["etc/kubernetes/pki/apiserver-kubelet-client.key"] = kubeletClient.Key
			f["etc/kubernetes/pki/sa.key"], f["etc/kubernetes/pki/sa.pub"] = sa.Key, sa.Cert
			if f["etc/kubernetes/controller-manager.conf"], err = kubeconfig(local, "system:kube-controller-manager"); err != nil {
				return nil, hostAccess{}, err
			}
			if f["etc/kubernetes/scheduler.conf"], err = kubeconfig(local, "system:kube-scheduler"); err != nil {
				return nil, hostAccess{}, err
			}
			if f["etc/kubernetes/admin.conf"], err = kubeconfig(local, "turtles-admin", "system:masters"); err != nil {
				return nil, hostAccess{}, err
			}
			// kubectl on node01 (a guest-mode command) works as is.
			f["root/.kube/config"] = f["etc/kubernetes/admin.conf"]
		}
		files[i] = f
	}
	return files, host, nil
}

// writeTar writes files as a tar: keys, kubeconfigs and anything for
// root 0600, the rest 0644, all root's. It has no directory entries: tar
// makes missing parents, and an entry for an existing one (etc/, root/)
// would change its mode.
func writeTar(w io.Writer, files map[string][]byte) error {
	tw := tar.NewWriter(w)
	var names []string
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		mode := int64(0o644)
		if strings.HasSuffix(n, ".key") || strings.HasSuffix(n, ".conf") || strings.HasSuffix(n, ".toml") || strings.HasPrefix(n, "root/") {
			mode = 0o600
		}
		if err := tw.WriteHeader(&tar.Header{Name: n, Mode: mode, Size: int64(len(files[n])), Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		if _, err := tw.Write(files[n]); err != nil {
			return err
		}
	}
	return tw.Close()
}
