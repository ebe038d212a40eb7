package main

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	ociremote "github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/turtles-ci/turtles/e2e"
	"github.com/turtles-ci/turtles/kubernetes"
	"github.com/turtles-ci/turtles/kubernetes/kubetest"
)

// TestKubernetesCluster is the proof of the kubernetes provider (make
// test-clusters, TURTLES_TEST_CLUSTERS=1; it needs the node image, made
// once): a two-node cluster up, both nodes Ready; an image the test
// pushes to the cluster's registry runs as a pod, on the worker (the
// control plane is tainted), and kubectl from the host reads its log,
// which shows the cluster DNS answering; down leaves nothing.
func TestKubernetesCluster(t *testing.T) {
	kubetest.Enabled(t)
	data, flags := machinesWorld(t, "turtles-test-kubernetes")
	tt := func(args ...string) (int, string) {
		t.Helper()
		return runTurtles(t, append(args, flags...)...)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	kubectlBin := kubetest.Kubectl(t, ctx, testWriter{t})
	kubectl := func(kubeconfig string, args ...string) (string, error) {
		cmd := exec.CommandContext(ctx, kubectlBin, append([]string{"kubectl", "--kubeconfig", kubeconfig}, args...)...)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	registryAddr := e2e.FreeAddr(t)
	_, port, _ := net.SplitHostPort(registryAddr)
	t.Cleanup(func() { stopRegistry(data) })
	began := time.Now()
	code, out := tt("cluster", "up", "--provider", "kubernetes", "--name", "kube", "--nodes", "2", "--registry-port", port,
		"--owner-pid", strconv.Itoa(os.Getpid()))
	t.Logf("cluster up took %s:\n%s", time.Since(began).Round(time.Second), out)
	if code != 0 {
		t.Fatalf("cluster up: exit %d", code)
	}
	defer tt("cluster", "down", "kube")

	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if code, out := tt("cluster", "kubeconfig", "kube", "-o", kubeconfig); code != 0 {
		t.Fatalf("cluster kubeconfig: exit %d\n%s", code, out)
	}
	t.Run("nodes Ready", func(t *testing.T) {
		out, err := kubectl(kubeconfig, "get", "nodes", "-o", "jsonpath={range .items[*]}{.metadata.name} {.status.conditions[?(@.type==\"Ready\")].status} {.status.nodeInfo.kubeletVersion}{\"\\n\"}{end}")
		if err != nil || out != "node01 True v"+kubernetes.Version+"\nnode02 True v"+kubernetes.Version+"\n" {
			t.Errorf("kubectl get nodes: %v\n%s", err, out)
		}
	})
	t.Run("strangers are refused", func(t *testing.T) {
		// Another task on the bot reaches the forwarded API server too:
		// without a certificate of this cluster's CA it gets nothing,
		// not even as an administrator of another cluster.
		b, err := os.ReadFile(kubeconfig)
		if err != nil {
			t.Fatal(err)
		}
		server, err := kubernetes.ServerOf(b)
		if err != nil {
			t.Fatal(err)
		}
		other, err := kubernetes.NewCA("kube")
		if err != nil {
			t.Fatal(err)
		}
		admin, err := other.Issue(kubernetes.CertRequest{CommonName: "turtles-admin", Orgs: []string{"system:masters"}})
		if err != nil {
			t.Fatal(err)
		}
		pair, err := tls.X509KeyPair(admin.Cert, admin.Key)
		if err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			name  string
			certs []tls.Certificate
		}{{"anonymous", nil}, {"another cluster's administrator", []tls.Certificate{pair}}} {
			cl := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
				TLSClientConfig: &tls.Config{InsecureSkipVerify: true, Certificates: tc.certs}}}
			for _, path := range []string{"/api/v1/namespaces/kube-system/secrets", "/api/v1/nodes", "/version"} {
				resp, err := cl.Get(server + path)
				if err != nil {
					t.Errorf("%s: GET %s: %v", tc.name, path, err)
					continue
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusUnauthorized {
					t.Errorf("%s: GET %s: %s, want 401", tc.name, path, resp.Status)
				}
			}
		}
	})
	t.Run("env", func(t *testing.T) {
		code, out := tt("cluster", "env", "kube")
		if code != 0 || !strings.Contains(out, "export KUBECONFIG='"+filepath.Join(data, "clusters", "kube", "kubeconfig")+"'\n") {
			t.Errorf("cluster env lacks KUBECONFIG: exit %d\n%s", code, out)
		}
	})
	t.Run("a pod from the registry on the worker", func(t *testing.T) {
		src := t.TempDir()
		img := kubetest.HelloImage(t, "hello:1")
		ref, err := name.ParseReference(registryAddr+"/hello:1", name.Insecure)
		if err != nil {
			t.Fatal(err)
		}
		if err := ociremote.Write(ref, img); err != nil {
			t.Fatalf("push to the cluster's registry: %v", err)
		}
		manifest := filepath.Join(src, "pod.yaml")
		os.WriteFile(manifest, []byte(kubetest.PodManifest("hello", "registry:"+port+"/hello:1")), 0o644)
		if out, err := kubectl(kubeconfig, "apply", "-f", manifest); err != nil {
			t.Fatalf("kubectl apply: %v\n%s", err, out)
		}
		if out, err := kubectl(kubeconfig, "wait", "--for=jsonpath={.status.phase}=Succeeded", "pod/hello", "--timeout=5m"); err != nil {
			desc, _ := kubectl(kubeconfig, "describe", "pod/hello")
			t.Fatalf("the pod did not succeed: %v\n%s\n%s", err, out, desc)
		}
		out, err := kubectl(kubeconfig, "logs", "hello")
		for _, want := range kubetest.HelloLogs("node02") {
			if err != nil || !strings.Contains(out, want) {
				t.Errorf("kubectl logs hello lacks %q: %v\n%s", want, err, out)
			}
		}
	})
	t.Run("down", func(t *testing.T) {
		clusterDown(t, tt, data, "kube")
		if _, err := kubectl(kubeconfig, "get", "nodes", "--request-timeout=5s"); err == nil {
			t.Error("the API server still answers after down")
		}
	})
}

// testWriter is t.Log as an io.Writer.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
