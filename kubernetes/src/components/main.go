//go:build ignore

// Command kubebin is every Kubernetes component a turtles cluster node
// runs, in one binary built from k8s.io/kubernetes at the version pinned in
// go.mod: one build and one file to copy into a node image instead of
// seven. It runs the component named by its first argument, or by the
// name it was called by (a symlink named kubelet runs the kubelet):
//
//	kubebin kube-apiserver | kube-controller-manager | kube-scheduler |
//	        kubelet | kube-proxy | kubectl | etcd | version [FLAGS]
//
// etcd is the one Kubernetes was tested with (go.etcd.io/etcd/server,
// required by k8s.io/kubernetes), not Debian's older one.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/spf13/cobra"
	"go.etcd.io/etcd/server/v3/etcdmain"
	"k8s.io/component-base/cli"
	"k8s.io/component-base/version"
	kubectl "k8s.io/kubectl/pkg/cmd"
	apiserver "k8s.io/kubernetes/cmd/kube-apiserver/app"
	controller "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	proxy "k8s.io/kubernetes/cmd/kube-proxy/app"
	scheduler "k8s.io/kubernetes/cmd/kube-scheduler/app"
	kubelet "k8s.io/kubernetes/cmd/kubelet/app"
)

func main() {
	name, args := filepath.Base(os.Args[0]), os.Args[1:]
	if name == "kubebin" {
		if len(args) == 0 {
			fmt.Fprintln(os.Stderr, "usage: kubebin COMPONENT [FLAGS]: kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kube-proxy, kubectl, etcd, version")
			os.Exit(2)
		}
		name, args = args[0], args[1:]
	}
	var cmd *cobra.Command
	switch name {
	case "kube-apiserver":
		cmd = apiserver.NewAPIServerCommand()
	case "kube-controller-manager":
		cmd = controller.NewControllerManagerCommand()
	case "kube-scheduler":
		cmd = scheduler.NewSchedulerCommand()
	case "kubelet":
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		cmd = kubelet.NewKubeletCommand(ctx)
	case "kube-proxy":
		cmd = proxy.NewProxyCommand()
	case "kubectl":
		cmd = kubectl.NewDefaultKubectlCommand()
	case "etcd":
		etcdmain.Main(append([]string{"etcd"}, args...))
		return
	case "version":
		fmt.Println(version.Get().GitVersion)
		return
	default:
		fmt.Fprintf(os.Stderr, "kubebin: no component %q\n", name)
		os.Exit(2)
	}
	cmd.SetArgs(args)
	os.Exit(cli.Run(cmd))
}
