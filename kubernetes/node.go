package kubernetes

import (
	"fmt"
	"net/netip"
	"strings"
)

// What every node image holds (the overlay of Prepare) and what each
// cluster writes onto its nodes (Provision). Addresses:
//
//	10.77.0.11...    the nodes, on the cluster's private network
//	10.244.N.0/24    the pods of the N-th node (1-based), on its cni0
//	10.96.0.0/16     services; 10.96.0.1 is the API server
const (
	// PodCIDR holds every node's pod subnet.
	PodCIDR = "10.244.0.0/16"
	// ServiceCIDR is the services' addresses.
	ServiceCIDR = "10.96.0.0/16"
	// APIServiceIP is the kubernetes service's address.
	APIServiceIP = "10.96.0.1"
	// DNSServiceIP is the cluster DNS service's address.
	DNSServiceIP = "10.96.0.10"
	// APIPort is the API server's port on the control-plane node.
	APIPort = 6443
	// PauseImage is the sandbox image containerd runs for every pod:
	// built locally (images.go) and imported into every node, never
	// pulled.
	PauseImage = "turtles.local/pause:1"
	// DNSImage is the cluster DNS server's image, built like PauseImage.
	DNSImage = "turtles.local/dns:1"
)

// Components are the names kubebin answers to, linked to it in
// /usr/local/bin of every node.
var Components = []string{"kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy", "kubectl", "etcd"}

// NodePackages are the Debian packages of a node image beside Kubernetes
// itself: the container runtime, CNI plugins and what kube-proxy and the
// kubelet call.
var NodePackages = []string{"containerd", "runc", "containernetworking-plugins", "iptables", "conntrack", "ethtool", "socat", "ebtables"}

// imageFiles are the files every node image holds, by path, besides the
// binaries and images: containerd's configuration, kernel settings and
// the units of every component (started by Provision, never at boot:
// they need the cluster's certificates).
var imageFiles = map[string]string{
	"etc/containerd/config.toml": `version = 2
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "` + PauseImage + `"
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
  SystemdCgroup = true
[plugins."io.containerd.grpc.v1.cri".cni]
  bin_dir = "/usr/lib/cni"
  conf_dir = "/etc/cni/net.d"
[plugins."io.containerd.grpc.v1.cri".registry]
  config_path = "/etc/containerd/certs.d"
`,
	"etc/modules-load.d/turtles-kubernetes.conf": "overlay\nbr_netfilter\n",
	"etc/sysctl.d/90-turtles-kubernetes.conf":    "net.ipv4.ip_forward = 1\nnet.bridge.bridge-nf-call-iptables = 1\nnet.bridge.bridge-nf-call-ip6tables = 1\n",
	"etc/systemd/system/turtles-images.service": `[Unit]
Description=Import the node's container images (pause, DNS) into containerd
After=containerd.service
Requires=containerd.service

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/sh -c 'for f in /var/lib/turtles/images/*.tar; do ctr -n k8s.io images import --no-unpack "$f" || exit 1; done'

[Install]
WantedBy=multi-user.target
`,
	"etc/systemd/system/etcd.service": unit("etcd of the control plane, on the loopback only", "",
		"/usr/local/bin/etcd --name=control-plane --data-dir=/var/lib/etcd"+
			" --listen-client-urls=http://127.0.0.1:2379 --advertise-client-urls=http://127.0.0.1:2379"+
			" --listen-peer-urls=http://127.0.0.1:2380 --initial-advertise-peer-urls=http://127.0.0.1:2380"+
			" --initial-cluster=control-plane=http://127.0.0.1:2380 --quota-backend-bytes=1073741824"),
	"etc/systemd/system/kube-apiserver.service": unit("the Kubernetes API server", "etcd.service",
		"/usr/local/bin/kube-apiserver --etcd-servers=http://127.0.0.1:2379"+
			" --advertise-address=${NODE_IP} --bind-address=0.0.0.0 --secure-port=6443"+
			" --tls-cert-file=/etc/kubernetes/pki/apiserver.crt --tls-private-key-file=/etc/kubernetes/pki/apiserver.key"+
			" --client-ca-file=/etc/kubernetes/pki/ca.crt"+
			" --kubelet-client-certificate=/etc/kubernetes/pki/apiserver-kubelet-client.crt"+
			" --kubelet-client-key=/etc/kubernetes/pki/apiserver-kubelet-client.key"+
			" --kubelet-preferred-address-types=InternalIP"+
			" --service-account-issuer=https://kubernetes.default.svc.cluster.local"+
			" --service-account-key-file=/etc/kubernetes/pki/sa.pub"+
			" --service-account-signing-key-file=/etc/kubernetes/pki/sa.key"+
			" --service-cluster-ip-range="+ServiceCIDR+
			" --authorization-mode=Node,RBAC --enable-admission-plugins=NodeRestriction"+
			" --allow-privileged=true --profiling=false --anonymous-auth=false"),
	"etc/systemd/system/kube-controller-manager.service": unit("the Kubernetes controller manager", "kube-apiserver.service",
		"/usr/local/bin/kube-controller-manager --kubeconfig=/etc/kubernetes/controller-manager.conf"+
			" --authentication-kubeconfig=/etc/kubernetes/controller-manager.conf"+
			" --authorization-kubeconfig=/etc/kubernetes/controller-manager.conf"+
			" --bind-address=127.0.0.1 --leader-elect=false --use-service-account-credentials=true"+
			" --cluster-signing-cert-file=/etc/kubernetes/pki/ca.crt --cluster-signing-key-file=/etc/kubernetes/pki/ca.key"+
			" --root-ca-file=/etc/kubernetes/pki/ca.crt --service-account-private-key-file=/etc/kubernetes/pki/sa.key"+
			" --service-cluster-ip-range="+ServiceCIDR+" --profiling=false"),
	"etc/systemd/system/kube-scheduler.service": unit("the Kubernetes scheduler", "kube-apiserver.service",
		"/usr/local/bin/kube-scheduler --kubeconfig=/etc/kubernetes/scheduler.conf"+
			" --authentication-kubeconfig=/etc/kubernetes/scheduler.conf"+
			" --authorization-kubeconfig=/etc/kubernetes/scheduler.conf"+
			" --bind-address=127.0.0.1 --leader-elect=false --profiling=false"),
	"etc/systemd/system/kubelet.service": unit("the Kubernetes node agent", "containerd.service turtles-images.service",
		"/usr/local/bin/kubelet --config=/etc/kubernetes/kubelet.yaml --kubeconfig=/etc/kubernetes/kubelet.conf"+
			" --node-ip=${NODE_IP} --hostname-override=${NODE_NAME} $KUBELET_EXTRA"),
	"etc/systemd/system/kube-proxy.service": unit("the Kubernetes service proxy", "",
		"/usr/local/bin/kube-proxy --kubeconfig=/etc/kubernetes/kube-proxy.conf --proxy-mode=iptables"+
			" --cluster-cidr="+PodCIDR+" --hostname-override=${NODE_NAME} --profiling=false"),
	"etc/kubernetes/kubelet.yaml": `apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: true
  x509:
    clientCAFile: /etc/kubernetes/pki/ca.crt
authorization:
  mode: Webhook
cgroupDriver: systemd
containerRuntimeEndpoint: unix:///run/containerd/containerd.sock
clusterDomain: cluster.local
clusterDNS:
  - ` + DNSServiceIP + `
failSwapOn: false
resolvConf: /etc/resolv.conf
serializeImagePulls: false
imageGCHighThresholdPercent: 100
evictionHard:
  memory.available: "50Mi"
  nodefs.available: "1%"
  imagefs.available: "1%"
`,
}

// unit is a systemd service for a component: restarted when it fails
// (the API server may not answer yet), its node's values from
// /etc/kubernetes/node.env.
func unit(what, after, exec string) string {
	deps := ""
	if after != "" {
		deps = "After=" + after + "\nWants=" + after + "\n"
	}
	return fmt.Sprintf(`[Unit]
Description=%s (turtles)
%s
[Service]
EnvironmentFile=/etc/kubernetes/node.env
ExecStart=%s
Restart=always
RestartSec=1
LimitNOFILE=1048576
`, what, deps, exec)
}

// nodeSetup runs in the image after the overlay: containerd and the
// image import start at boot, so a warm state has them running.
const nodeSetup = `systemctl enable containerd.service turtles-images.service
mkdir -p /var/lib/etcd /etc/cni/net.d /etc/containerd/certs.d
chmod 700 /var/lib/etcd
`

// nodeEnv is /etc/kubernetes/node.env of a node.
func nodeEnv(name string, addr netip.Addr, control bool) string {
	extra := ""
	if control {
		extra = "--register-with-taints=node-role.kubernetes.io/control-plane=:NoSchedule"
	}
	return fmt.Sprintf("NODE_NAME=%s\nNODE_IP=%s\nKUBELET_EXTRA=%s\n", name, addr, extra)
}

// podSubnet is the pod subnet of the i-th node (0-based).
func podSubnet(i int) string { return fmt.Sprintf("10.244.%d.0/24", i+1) }

// cniConfig is the bridge network of the i-th node's pods: cni0 on the
// node's own subnet, masqueraded when leaving the pod network.
func cniConfig(i int) string {
	return fmt.Sprintf(`{
  "cniVersion": "0.4.0",
  "name": "turtles",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "cni0",
      "isGateway": true,
      "ipMasq": true,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "%s"}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
`, podSubnet(i))
}

// routes are the commands that route every other node's pod subnet to
// that node over the private network.
func routes(self int, addrs []netip.Addr) string {
	var b strings.Builder
	for i, a := range addrs {
		if i != self {
			fmt.Fprintf(&b, "ip route replace %s via %s\n", podSubnet(i), a)
		}
	}
	return b.String()
}

// registryHosts is containerd's hosts.toml for the cluster's registry at
// addr (registry:5000): plain HTTP, on the host, for this cluster only;
// auth, if set, is the Authorization header every request carries.
func registryHosts(addr, auth string) string {
	s := fmt.Sprintf("server = %q\n\n[host.%q]\n  capabilities = [\"pull\", \"resolve\"]\n", "http://"+addr, "http://"+addr)
	if auth != "" {
		s += fmt.Sprintf("  [host.%q.header]\n    Authorization = %q\n", "http://"+addr, auth)
	}
	return s
}
