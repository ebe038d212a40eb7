package kubernetes

import (
	"context"
	"fmt"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/turtles-ci/turtles/cluster"
)

// client talks to a cluster's API server from the host.
type client struct {
	k *kubernetes.Clientset
}

func newClient(kubeconfig []byte) (*client, error) {
	cfg, err := clientcmd.RESTConfigFromKubeConfig(kubeconfig)
	if err != nil {
		return nil, err
	}
	cfg.Timeout = 15 * time.Second
	k, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	return &client{k: k}, nil
}

// poll calls f every interval until it returns true or an error, or ctx
// ends; the last not-yet reason is in the error.
func poll(ctx context.Context, interval time.Duration, what string, f func(context.Context) (bool, string, error)) error {
	last := "no answer yet"
	for {
		ok, why, err := f(ctx)
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		if why != "" {
			last = why
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w (last: %s)", what, ctx.Err(), last)
		case <-time.After(interval):
		}
	}
}

// waitAPI waits until the API server says it is ready.
func (c *client) waitAPI(ctx context.Context) error {
	return poll(ctx, time.Second, "wait for the API server", func(ctx context.Context) (bool, string, error) {
		body, err := c.k.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		if err != nil {
			return false, err.Error(), nil
		}
		return strings.TrimSpace(string(body)) == "ok", string(body), nil
	})
}

// waitNodes waits until every node of cl is registered and Ready,
// labelling node01 as the control plane once it is registered; ready is
// told of each node as it becomes Ready.
func (c *client) waitNodes(ctx context.Context, cl *cluster.Cluster, ready func(host string)) error {
	told := map[string]bool{}
	labelled := false
	control := cl.Nodes[0].Host
	return poll(ctx, time.Second, "wait for every node to be Ready", func(ctx context.Context) (bool, string, error) {
		nodes, err := c.k.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err.Error(), nil
		}
		for _, n := range nodes.Items {
			if n.Name == control && !labelled {
				patch := `{"metadata":{"labels":{"node-role.kubernetes.io/control-plane":""}}}`
				if _, err := c.k.CoreV1().Nodes().Patch(ctx, n.Name, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err == nil {
					labelled = true
				}
			}
			if isReady(n) && !told[n.Name] {
				told[n.Name] = true
				ready(n.Name)
			}
		}
		var missing []string
		for _, n := range cl.Nodes {
			if !told[n.Host] {
				missing = append(missing, n.Host)
			}
		}
		if len(missing) > 0 {
			return false, "not Ready: " + strings.Join(missing, ", "), nil
		}
		return labelled, "node01 not labelled", nil
	})
}

func isReady(n corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// dnsName is the name of the cluster DNS's objects in kube-system.
const dnsName = "turtles-dns"

// setUp makes the cluster's own objects: the cluster DNS (its service
// account, its right to read services and endpoints, its deployment and
// its service at DNSServiceIP).
func (c *client) setUp(ctx context.Context, cl *cluster.Cluster) error {
	ns := metav1.NamespaceSystem
	labels := map[string]string{"k8s-app": dnsName}
	objects := []func() error{
		func() error {
			_, err := c.k.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: dnsName}}, metav1.CreateOptions{})
			return err
		},
		func() error {
			_, err := c.k.RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{
				ObjectMeta: metav1.ObjectMeta{Name: dnsName},
				Rules: []rbacv1.PolicyRule{
					{APIGroups: []string{""}, Resources: []string{"services"}, Verbs: []string{"list", "watch"}},
					{APIGroups: []string{"discovery.k8s.io"}, Resources: []string{"endpointslices"}, Verbs: []string{"list", "watch"}},
				},
			}, metav1.CreateOptions{})
			return err
		},
		func() error {
			_, err := c.k.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
				ObjectMeta: metav1.ObjectMeta{Name: dnsName},
				RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: dnsName},
				Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: dnsName, Namespace: ns}},
			}, metav1.CreateOptions{})
			return err
		},
		func() error {
			one := int32(1)
			_, err := c.k.AppsV1().Deployments(ns).Create(ctx, &appsv1.Deployment{
				ObjectMeta: metav1.ObjectMeta{Name: dnsName, Labels: labels},
				Spec: appsv1.DeploymentSpec{
					Replicas: &one,
					Selector: &metav1.LabelSelector{MatchLabels: labels},
					Template: corev1.PodTemplateSpec{
						ObjectMeta: metav1.ObjectMeta{Labels: labels},
						Spec: corev1.PodSpec{
							ServiceAccountName: dnsName,
							DNSPolicy:          corev1.DNSDefault,
							PriorityClassName:  "system-cluster-critical",
							Tolerations: []corev1.Toleration{
								{Key: "node-role.kubernetes.io/control-plane", Effect: corev1.TaintEffectNoSchedule},
							},
							Containers: []corev1.Container{{
								Name: "dns", Image: DNSImage, ImagePullPolicy: corev1.PullNever,
								Ports: []corev1.ContainerPort{
									{Name: "dns", ContainerPort: 53, Protocol: corev1.ProtocolUDP},
									{Name: "dns-tcp", ContainerPort: 53, Protocol: corev1.ProtocolTCP},
								},
							}},
						},
					},
				},
			}, metav1.CreateOptions{})
			return err
		},
		func() error {
			_, err := c.k.CoreV1().Services(ns).Create(ctx, &corev1.Service{
				ObjectMeta: metav1.ObjectMeta{Name: dnsName, Labels: labels},
				Spec: corev1.ServiceSpec{
					ClusterIP: DNSServiceIP,
					Selector:  labels,
					Ports: []corev1.ServicePort{
						{Name: "dns", Port: 53, TargetPort: intstr.FromInt32(53), Protocol: corev1.ProtocolUDP},
						{Name: "dns-tcp", Port: 53, TargetPort: intstr.FromInt32(53), Protocol: corev1.ProtocolTCP},
					},
				},
			}, metav1.CreateOptions{})
			return err
		},
	}
	for _, make := range objects {
		// The API server may still be finishing its own start (its
		// RBAC roles, the priority classes): retry until ctx ends.
		err := poll(ctx, time.Second, "make the cluster DNS", func(context.Context) (bool, string, error) {
			err := make()
			if err == nil || apierrors.IsAlreadyExists(err) {
				return true, "", nil
			}
			return false, err.Error(), nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// waitDNS waits until the cluster DNS's pod is ready.
func (c *client) waitDNS(ctx context.Context) error {
	return poll(ctx, time.Second, "wait for the cluster DNS", func(ctx context.Context) (bool, string, error) {
		d, err := c.k.AppsV1().Deployments(metav1.NamespaceSystem).Get(ctx, dnsName, metav1.GetOptions{})
		if err != nil {
			return false, err.Error(), nil
		}
		return d.Status.ReadyReplicas >= 1, fmt.Sprintf("%d of 1 ready", d.Status.ReadyReplicas), nil
	})
}
