package cluster

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/turtles-ci/turtles/image"
	"github.com/turtles-ci/turtles/image/debian"
	"github.com/turtles-ci/turtles/syncio"
)

// etcdImage is the Debian image derived with etcd-server and etcd-client,
// built the first time.
func etcdImage(t *testing.T) *image.Manifest {
	t.Helper()
	debianImage(t) // the same skips; the base image first
	path, err := debian.CachedPackages(context.Background(), debian.CacheDir(), "debian-12",
		[]string{"etcd-client", "etcd-server"}, "http://deb.debian.org/debian", nil, slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	m, err := image.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// etcdConfig is /etc/default/etcd of node n: members named and reached
// by their host names, through each guest's resolver.
func etcdConfig(c *Cluster, n *Node) string {
	var members []string
	for _, m := range c.Nodes {
		members = append(members, fmt.Sprintf("%s=http://%s:2380", m.Host, m.Host))
	}
	return fmt.Sprintf(`ETCD_NAME=%[1]s
ETCD_DATA_DIR=/var/lib/etcd/turtles
ETCD_LISTEN_PEER_URLS=http://0.0.0.0:2380
ETCD_LISTEN_CLIENT_URLS=http://0.0.0.0:2379
ETCD_INITIAL_ADVERTISE_PEER_URLS=http://%[1]s:2380
ETCD_ADVERTISE_CLIENT_URLS=http://%[1]s:2379
ETCD_INITIAL_CLUSTER=%[2]s
ETCD_INITIAL_CLUSTER_STATE=new
ETCD_INITIAL_CLUSTER_TOKEN=turtles
`, n.Host, strings.Join(members, ","))
}

// TestEtcd is issue 19's proof: three machines of an image derived with
// Debian's etcd-server form an etcd cluster by their names; a key written
// through node01 is read through node03; with node02's machine stopped,
// the two others (a quorum of 2 of 3) still take writes.
func TestEtcd(t *testing.T) {
	img := etcdImage(t)
	dir := t.TempDir()
	ctx := context.Background()
	var console syncio.Buffer
	cfg := testConfig(t, "etcd", img, dir, &console, "", "", "")
	began := time.Now()
	c, err := Up(ctx, cfg)
	if err != nil {
		t.Fatalf("up: %v\n%s", err, console.String())
	}
	defer c.Down(ctx)
	t.Logf("three machines up and named in %s", time.Since(began).Round(100*time.Millisecond))

	// The package's own single-node etcd is replaced by the cluster's;
	// all three start at once (a member waits for a quorum).
	began = time.Now()
	if err := c.Each(ctx, func(ctx context.Context, n *Node) error {
		out, err := n.Output(ctx, n.asRoot(`set -e
systemctl stop etcd
cat > /etc/default/etcd <<'EOF'
`+etcdConfig(c, n)+`EOF
systemctl start --no-block etcd
for i in $(seq 240); do
	if ETCDCTL_API=3 etcdctl --endpoints=http://127.0.0.1:2379 --command-timeout=5s endpoint health >/dev/null 2>&1; then exit 0; fi
	sleep 0.5
done
systemctl status etcd --no-pager; journalctl -u etcd --no-pager | tail -30
exit 1`))
		if err != nil {
			return fmt.Errorf("%w\n%s", err, out)
		}
		return nil
	}); err != nil {
		t.Fatalf("etcd did not form: %v", err)
	}
	t.Logf("etcd formed in %s", time.Since(began).Round(100*time.Millisecond))

	etcdctl := func(n *Node, endpoint, args string) (string, error) {
		out, err := n.Output(ctx, "ETCDCTL_API=3 etcdctl --endpoints=http://"+endpoint+":2379 --command-timeout=30s "+args)
		return strings.TrimSpace(out), err
	}
	n1, _ := c.Node("node01")
	n2, _ := c.Node("node02")
	n3, _ := c.Node("node03")
	members, err := etcdctl(n1, "node01", "member list")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"http://node01:2380", "http://node02:2380", "http://node03:2380"} {
		if !strings.Contains(members, want) {
			t.Errorf("member list lacks %s:\n%s", want, members)
		}
	}
	if _, err := etcdctl(n1, "node01", "put turtles/key written-through-node01"); err != nil {
		t.Fatal(err)
	}
	if got, err := etcdctl(n3, "node03", "get --print-value-only turtles/key"); err != nil || got != "written-through-node01" {
		t.Errorf("read through node03: %q, %v", got, err)
	}

	// node02's whole machine goes away; two of three are a quorum.
	if err := n2.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := etcdctl(n1, "node01", "put turtles/key written-without-node02"); err != nil {
		t.Fatalf("write with node02 gone: %v", err)
	}
	if got, err := etcdctl(n3, "node03", "get --print-value-only turtles/key"); err != nil || got != "written-without-node02" {
		t.Errorf("read through node03 with node02 gone: %q, %v", got, err)
	}
}
