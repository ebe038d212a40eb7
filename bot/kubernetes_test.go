package bot

import (
	"context"

	"io"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/turtles-ci/turtles"
	"github.com/turtles-ci/turtles/cluster"
	"github.com/turtles-ci/turtles/image/debian"
	"github.com/turtles-ci/turtles/kubernetes"
	"github.com/turtles-ci/turtles/kubernetes/kubetest"
	"github.com/turtles-ci/turtles/queue"
)

// kubernetesConfig is a host-mode context with a Kubernetes cluster: the
// command pushes the image in img/ to the task's registry with curl (the
// registry API, with the task's password) and runs it as a pod with
// kubectl and the KUBECONFIG it was given. KUBECTL is kubebin's path.
const kubernetesConfig = `contexts:
  - name: k8s
    mode: host
    timeout: 20m
    cluster: {provider: kubernetes, nodes: 2}
    command: |
      set -eu
      auth="$TURTLES_REGISTRY_USER:$TURTLES_REGISTRY_PASSWORD"
      push() {
        loc=$(curl -sSf -u "$auth" -X POST -D - -o /dev/null "http://$TURTLES_REGISTRY/v2/hello/blobs/uploads/" | tr -d '\r' | sed -n 's/^[Ll]ocation: //p')
        case "$loc" in http*) ;; *) loc="http://$TURTLES_REGISTRY$loc" ;; esac
        case "$loc" in *\?*) loc="$loc&digest=$2" ;; *) loc="$loc?digest=$2" ;; esac
        curl -sSf -u "$auth" -X PUT -H 'Content-Type: application/octet-stream' --data-binary @"$1" "$loc"
      }
      push img/layer LAYER
      push img/config CONFIG
      curl -sSf -u "$auth" -X PUT -H 'Content-Type: MEDIATYPE' --data-binary @img/manifest "http://$TURTLES_REGISTRY/v2/hello/manifests/1"
      echo pushed
      kubectl() { KUBECTL kubectl "$@"; }
      kubectl apply -f - <<EOF
      POD
      EOF
      kubectl wait --for=jsonpath='{.status.phase}'=Succeeded pod/hello --timeout=5m
      kubectl logs hello
`

// TestKubernetesTask (make test-clusters) runs a context with cluster:
// {provider: kubernetes} through a real bot: the cluster comes up, the
// command pushes to the task's registry (password and all, which the
// nodes' containerd must send too) and reads its pod's log with the
// KUBECONFIG it got; nothing is left.
func TestKubernetesTask(t *testing.T) {
	kubetest.Enabled(t)
	images := vmImages(t)
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Minute)
	defer cancel()
	kubectl := kubetest.Kubectl(t, ctx, os.Stderr)
	img := kubetest.HelloImage(t, "hello:1")
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("layers %v, %v", layers, err)
	}
	rc, err := layers[0].Compressed()
	if err != nil {
		t.Fatal(err)
	}
	var layer strings.Builder
	if _, err := io.Copy(&layer, rc); err != nil {
		t.Fatal(err)
	}
	ld, _ := layers[0].Digest()
	cfgName, _ := img.ConfigName()
	rawCfg, _ := img.RawConfigFile()
	rawManifest, _ := img.RawManifest()
	mt, _ := img.MediaType()
	pod := kubetest.PodManifest("hello", "REGISTRY/hello:1")
	pod = strings.ReplaceAll(strings.TrimRight(pod, "\n"), "\n", "\n      ")
	pod = strings.Replace(pod, "REGISTRY", "$TURTLES_REGISTRY_GUEST", 1)
	conf := strings.NewReplacer("LAYER", ld.String(), "CONFIG", cfgName.String(), "MEDIATYPE", string(mt),
		"KUBECTL", kubectl, "POD", pod).Replace(kubernetesConfig)
	h := newHarness(t, map[string]string{".turtles.yaml": conf, "img/layer": layer.String(),
		"img/config": string(rawCfg), "img/manifest": string(rawManifest)}, queue.Options{})
	h.cfg.VM = testVM(images, h.workDir)
	h.cfg.VM.Warm = t.TempDir()
	h.cfg.VM.BootTimeout = 10 * time.Minute
	h.cfg.VM.Providers = map[string]cluster.Provider{"kubernetes": &kubernetes.Provider{
		ImageCache: debian.CacheDir(), Mirror: "http://deb.debian.org/debian", Log: slog.Default(),
		Binaries: func(ctx context.Context, out io.Writer) (kubernetes.Binaries, error) {
			return kubernetes.BuildBinaries(ctx, kubernetes.CacheDir(), out)
		},
	}}
	// Trusted, outside the sandbox: the command runs kubectl from the
	// host's cache.
	h.cfg.Sandbox = nil
	task := h.task(turtles.KindTest, "k8s", "")
	task.Trusted = true
	h.publish(task)
	start := time.Now()
	h.start()
	for {
		d, err := h.db.Receive(ctx)
		if err != nil {
			t.Fatalf("waiting for the task: %v", err)
		}
		d.Ack(ctx)
		if d.Event().Type == turtles.EventFinished {
			break
		}
	}
	t.Logf("the task took %s", time.Since(start).Round(time.Second))
	res, log := h.result(task), h.log(task)
	if res.Outcome != (turtles.Outcome{Class: turtles.Success}) {
		t.Errorf("outcome %+v\n%s", res.Outcome, log)
	}
	for _, want := range append([]string{"booting 2 machines on a private network: node01 (2 CPUs, 2048 MiB), node02 (2 CPUs, 2048 MiB)",
		"is up: 2 nodes Ready", "pushed\n", "pod/hello created"}, kubetest.HelloLogs("node02")...) {
		if !strings.Contains(log, want) {
			t.Errorf("the log lacks %q:\n%s", want, log)
		}
	}
	h.waitIdle()
	if q := qemuOf(h.workDir); len(q) != 0 {
		t.Errorf("qemu processes left behind: %v", q)
	}
}
