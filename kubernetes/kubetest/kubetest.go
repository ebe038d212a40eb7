// Package kubetest has what the tests of Kubernetes clusters share: the
// image of a small program to run as a pod, and kubectl.
package kubetest

import (
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/turtles-ci/turtles/kubernetes"
)

// helloPod says on which node it runs (NODE_NAME, from the pod's spec)
// and what the cluster DNS answers for the API server's service.
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

// HelloLogs are the lines the hello pod logs on node.
func HelloLogs(node string) []string {
	return []string{"hello from " + node + "\n",
		"kubernetes.default.svc.cluster.local: [" + kubernetes.APIServiceIP + "] <nil>\n"}
}

// PodManifest is a pod that runs image once, with NODE_NAME set.
func PodManifest(name, image string) string {
	return `apiVersion: v1
kind: Pod
metadata:
  name: ` + name + `
spec:
  restartPolicy: Never
  containers:
    - name: ` + name + `
      image: ` + image + `
      env:
        - name: NODE_NAME
          valueFrom:
            fieldRef:
              fieldPath: spec.nodeName
`
}

// HelloImage builds the hello program (static) and returns its image,
// tagged tag.
func HelloImage(t *testing.T, tag string) v1.Image {
	t.Helper()
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "main.go"), []byte(helloPod), 0o644)
	os.WriteFile(filepath.Join(src, "go.mod"), []byte("module hello\n\ngo 1.22\n"), 0o644)
	build := exec.Command("go", "build", "-o", filepath.Join(src, "hello"), ".")
	build.Dir, build.Env = src, append(os.Environ(), "CGO_ENABLED=0", "GOWORK=off", "GOFLAGS=")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the pod's program: %v\n%s", err, out)
	}
	img, err := kubernetes.BinaryImage{Tag: tag, Binary: filepath.Join(src, "hello")}.Image()
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// Kubectl returns the path of a kubectl (kubebin, built once): run it as
// Kubectl(t) kubectl ARGS.
func Kubectl(t *testing.T, ctx context.Context, out io.Writer) string {
	t.Helper()
	bins, err := kubernetes.BuildBinaries(ctx, kubernetes.CacheDir(), out)
	if err != nil {
		t.Fatal(err)
	}
	return bins.Components["kubectl"]
}

// Enabled skips t unless TURTLES_TEST_CLUSTERS is set (make
// test-clusters): a Kubernetes cluster under TCG takes minutes.
func Enabled(t *testing.T) {
	t.Helper()
	if os.Getenv("TURTLES_TEST_CLUSTERS") == "" {
		t.Skip("a Kubernetes cluster under TCG takes minutes: make test-clusters runs it")
	}
}
