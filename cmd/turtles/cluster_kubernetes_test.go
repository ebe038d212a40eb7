package main

import (
	"context"
	"net"
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
)

// helloPod is the test's own program, run as a pod: it says where it
// runs and what the cluster DNS answers for the API server's service.
const helloPod = `package main

import (
	"fmt"
	"net"
	"os"
)

func main() {
	fmt.Printf("hello from %s\n", os.Getenv("NODE_NAME"))
	addrs, err := net.LookupHost("kubernetes.default.svc.cluster.local")
	fmt.Printf("kubernetes.default.svc.cluster.local: %v %v\n", addrs, err)
}
`

const helloManifest = `apiVersion: v1
kind: Pod
metadata:
  name: hello
spec:
  restartPolicy: Never
  containers:
    - name: hello
      image: IMAGE
      env:
        - name: NODE_NAME
          valueFrom:
            fieldRef:
              fieldPath: spec.nodeName
`

// TestKubernetesCluster is the proof of the kubernetes provider (make
// test-clusters, TURTLES_TEST_CLUSTERS=1; it needs the node image, made
// once): a two-node cluster up, both nodes Ready; an image the test
// pushes to the cluster's registry runs as a pod, on the worker (the
// control plane is tainted), and kubectl from the host reads its log,
// which shows the cluster DNS answering; down leaves nothing.
func TestKubernetesCluster(t *testing.T) {
	if os.Getenv("TURTLES_TEST_CLUSTERS") == "" {
		t.Skip("a Kubernetes cluster under TCG takes minutes: make test-clusters runs it")
	}
	data, flags := machinesWorld(t, "turtles-test-kubernetes")
	tt := func(args ...string) (int, string) {
		t.Helper()
		return runTurtles(t, append(args, flags...)...)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	bins, err := kubernetes.BuildBinaries(ctx, kubernetes.CacheDir(), testWriter{t})
	if err != nil {
		t.Fatal(err)
	}
	kubectl := func(kubeconfig string, args ...string) (string, error) {
		cmd := exec.CommandContext(ctx, bins.Components["kubectl"], append([]string{"kubectl", "--kubeconfig", kubeconfig}, args...)...)
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
	t.Run("env", func(t *testing.T) {
		code, out := tt("cluster", "env", "kube")
		if code != 0 || !strings.Contains(out, "export KUBECONFIG='"+filepath.Join(data, "clusters", "kube", "kubeconfig")+"'\n") {
			t.Errorf("cluster env lacks KUBECONFIG: exit %d\n%s", code, out)
		}
	})
	t.Run("a pod from the registry on the worker", func(t *testing.T) {
		src := t.TempDir()
		os.WriteFile(filepath.Join(src, "main.go"), []byte(helloPod), 0o644)
		os.WriteFile(filepath.Join(src, "go.mod"), []byte("module hello\n\ngo 1.22\n"), 0o644)
		build := exec.CommandContext(ctx, "go", "build", "-o", filepath.Join(src, "hello"), ".")
		build.Dir, build.Env = src, append(os.Environ(), "CGO_ENABLED=0", "GOWORK=off", "GOFLAGS=")
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("build the pod's program: %v\n%s", err, out)
		}
		img, err := kubernetes.BinaryImage{Tag: "hello:1", Binary: filepath.Join(src, "hello")}.Image()
		if err != nil {
			t.Fatal(err)
		}
		ref, err := name.ParseReference(registryAddr+"/hello:1", name.Insecure)
		if err != nil {
			t.Fatal(err)
		}
		if err := ociremote.Write(ref, img); err != nil {
			t.Fatalf("push to the cluster's registry: %v", err)
		}
		manifest := filepath.Join(src, "pod.yaml")
		os.WriteFile(manifest, []byte(strings.Replace(helloManifest, "IMAGE", "registry:"+port+"/hello:1", 1)), 0o644)
		if out, err := kubectl(kubeconfig, "apply", "-f", manifest); err != nil {
			t.Fatalf("kubectl apply: %v\n%s", err, out)
		}
		if out, err := kubectl(kubeconfig, "wait", "--for=jsonpath={.status.phase}=Succeeded", "pod/hello", "--timeout=5m"); err != nil {
			desc, _ := kubectl(kubeconfig, "describe", "pod/hello")
			t.Fatalf("the pod did not succeed: %v\n%s\n%s", err, out, desc)
		}
		out, err := kubectl(kubeconfig, "logs", "hello")
		if err != nil || !strings.Contains(out, "hello from node02\n") ||
			!strings.Contains(out, "kubernetes.default.svc.cluster.local: ["+kubernetes.APIServiceIP+"] <nil>\n") {
			t.Errorf("kubectl logs hello: %v\n%s", err, out)
		}
	})
	t.Run("down", func(t *testing.T) {
		if code, out := tt("cluster", "down", "kube"); code != 0 {
			t.Fatalf("cluster down: exit %d\n%s", code, out)
		}
		for _, d := range []string{"vms", "clusters"} {
			if left, _ := os.ReadDir(filepath.Join(data, d)); len(left) != 0 {
				t.Errorf("left in %s: %v", d, left)
			}
		}
		if qemuRunning(data) {
			t.Error("a qemu of the cluster still runs")
		}
		if switchRunning(data) {
			t.Error("the cluster's switch still runs")
		}
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
