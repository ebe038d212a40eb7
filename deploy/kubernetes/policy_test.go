package kubernetes_test

import (
	"fmt"
	"slices"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// checkNonRoot: a container runs as a user other than root, cannot gain
// privileges, holds no capability and cannot change its image's files.
// The container's securityContext overrides the pod's.
func checkNonRoot(d *appsv1.Deployment, c corev1.Container) []error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("deployment %s: container %s: "+format, append([]any{d.Name, c.Name}, args...)...))
	}
	pod := d.Spec.Template.Spec.SecurityContext
	if pod == nil {
		pod = &corev1.PodSecurityContext{}
	}
	sc := c.SecurityContext
	if sc == nil {
		sc = &corev1.SecurityContext{}
	}
	nonRoot, user := pod.RunAsNonRoot, pod.RunAsUser
	if sc.RunAsNonRoot != nil {
		nonRoot = sc.RunAsNonRoot
	}
	if sc.RunAsUser != nil {
		user = sc.RunAsUser
	}
	switch {
	case user != nil && *user == 0:
		bad("runs as root (runAsUser: 0)")
	case nonRoot == nil || !*nonRoot:
		bad("no runAsNonRoot: true (the kubelet would start it as root if the image said so)")
	case user == nil:
		bad("no runAsUser: the user is whatever the image says")
	}
	if sc.Privileged != nil && *sc.Privileged {
		bad("privileged")
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		bad("no allowPrivilegeEscalation: false")
	}
	if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") || len(sc.Capabilities.Add) > 0 {
		bad("capabilities: want drop ALL and add none")
	}
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		bad("no readOnlyRootFilesystem: true")
	}
	return errs
}

// checkResources: every container asks for CPU and memory and is limited
// in memory, so that the scheduler places it and a leak ends in its own
// restart, not in the node's OOM killer choosing.
func checkResources(d *appsv1.Deployment, c corev1.Container) []error {
	r := c.Resources
	var errs []error
	if r.Requests.Cpu().IsZero() || r.Requests.Memory().IsZero() {
		errs = append(errs, fmt.Errorf("deployment %s: container %s: no CPU and memory requests", d.Name, c.Name))
	}
	if r.Limits.Memory().IsZero() {
		errs = append(errs, fmt.Errorf("deployment %s: container %s: no memory limit", d.Name, c.Name))
	}
	return errs
}

// matches reports whether a label selector (matchLabels only) selects
// labels; an empty selector selects everything.
func matches(sel *metav1.LabelSelector, labels map[string]string) (bool, error) {
	if sel == nil {
		return false, nil
	}
	if len(sel.MatchExpressions) > 0 {
		return false, fmt.Errorf("matchExpressions are not checked by this test")
	}
	for k, v := range sel.MatchLabels {
		if labels[k] != v {
			return false, nil
		}
	}
	return true, nil
}

// checkBudgets: every budget covers some Deployment and lets a drain
// proceed; every Deployment of more than one replica has one.
func checkBudgets(m *manifests) []error {
	var errs []error
	covered := map[string]bool{}
	for _, b := range m.budgets {
		n := 0
		for _, d := range m.deployments {
			ok, err := matches(b.Spec.Selector, d.Spec.Template.Labels)
			if err != nil {
				errs = append(errs, fmt.Errorf("budget %s: %w", b.Name, err))
			}
			if !ok {
				continue
			}
			n++
			covered[d.Name] = true
			replicas := int32(1)
			if d.Spec.Replicas != nil {
				replicas = *d.Spec.Replicas
			}
			switch {
			case b.Spec.MinAvailable != nil && b.Spec.MinAvailable.Type != 0 || b.Spec.MaxUnavailable != nil && b.Spec.MaxUnavailable.Type != 0:
				errs = append(errs, fmt.Errorf("budget %s: give numbers, not percentages", b.Name))
			case b.Spec.MinAvailable != nil && b.Spec.MinAvailable.IntVal >= replicas,
				b.Spec.MaxUnavailable != nil && b.Spec.MaxUnavailable.IntVal < 1:
				errs = append(errs, fmt.Errorf("budget %s blocks every drain of deployment %s (%d replicas)", b.Name, d.Name, replicas))
			}
		}
		if n == 0 {
			errs = append(errs, fmt.Errorf("budget %s selects no Deployment", b.Name))
		}
	}
	for _, d := range m.deployments {
		if d.Spec.Replicas != nil && *d.Spec.Replicas > 1 && !covered[d.Name] {
			errs = append(errs, fmt.Errorf("deployment %s has %d replicas and no PodDisruptionBudget", d.Name, *d.Spec.Replicas))
		}
	}
	return errs
}

// peers are the services outside turtles that a part may reach, by the
// value of peerLabel on their pods.
var peers = []string{"broker", "database", "store"}

// isDNS reports whether a peer is the cluster's DNS.
func isDNS(p networkingv1.NetworkPolicyPeer) bool {
	return p.NamespaceSelector != nil && p.NamespaceSelector.MatchLabels["kubernetes.io/metadata.name"] == "kube-system" &&
		p.PodSelector != nil && p.PodSelector.MatchLabels["k8s-app"] == "kube-dns"
}

// checkPolicies: everything is denied unless allowed; every policy
// selects pods that exist; and the bots reach only the broker, the
// database, the store, DNS and each other (image peers), and are reached
// only by each other: never the forge, never the internet.
func checkPolicies(m *manifests) []error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	denyAll := false
	for _, p := range m.policies {
		if len(p.Spec.PodSelector.MatchLabels) == 0 && len(p.Spec.PodSelector.MatchExpressions) == 0 &&
			slices.Contains(p.Spec.PolicyTypes, networkingv1.PolicyTypeIngress) && slices.Contains(p.Spec.PolicyTypes, networkingv1.PolicyTypeEgress) &&
			len(p.Spec.Ingress) == 0 && len(p.Spec.Egress) == 0 {
			denyAll = true
		}
	}
	if !denyAll {
		bad("no NetworkPolicy denies all traffic by default")
	}
	for _, p := range m.policies {
		var selected []*appsv1.Deployment
		for _, d := range m.deployments {
			ok, err := matches(&p.Spec.PodSelector, d.Spec.Template.Labels)
			if err != nil {
				bad("network policy %s: %v", p.Name, err)
			}
			if ok {
				selected = append(selected, d)
			}
		}
		if len(selected) == 0 {
			bad("network policy %s selects no Deployment's pods", p.Name)
		}
		for _, r := range p.Spec.Ingress {
			for _, port := range r.Ports {
				if port.Port == nil || port.Port.StrVal == "" {
					continue
				}
				for _, d := range selected {
					if containerWithPort(d.Spec.Template.Spec, port.Port.StrVal) == nil {
						bad("network policy %s: deployment %s has no container port named %q", p.Name, d.Name, port.Port.StrVal)
					}
				}
			}
		}
		for _, d := range selected {
			if isBot(d) {
				errs = append(errs, checkBotPolicy(m, p, d)...)
			}
			if runs(d, "git-mirror") {
				errs = append(errs, checkMirrorPolicy(m, p, d)...)
			}
		}
	}
	// The git mirror is the bots' way to the forge: some policy must let
	// it out there, or no bot gets a commit.
	for _, d := range m.deployments {
		if !runs(d, "git-mirror") {
			continue
		}
		if !slices.ContainsFunc(m.policies, func(p *networkingv1.NetworkPolicy) bool {
			ok, _ := matches(&p.Spec.PodSelector, d.Spec.Template.Labels)
			return ok && forgeEgress(p)
		}) {
			bad("no network policy lets the git mirror %s reach the forge (ipBlock on port 443 or 22)", d.Name)
		}
	}
	return errs
}

// isBot reports whether a Deployment runs turtles bot.
func isBot(d *appsv1.Deployment) bool { return runs(d, "bot") }

// runs reports whether a container of d runs turtles sub.
func runs(d *appsv1.Deployment, sub string) bool {
	return slices.ContainsFunc(d.Spec.Template.Spec.Containers, func(c corev1.Container) bool {
		s, _ := command(c)
		return s == sub
	})
}

// mirrorPeer reports whether a peer is the git mirror's pods, in the
// policy's namespace: it selects some Deployment, and only ones that run
// turtles git-mirror.
func mirrorPeer(m *manifests, peer networkingv1.NetworkPolicyPeer) bool {
	if peer.NamespaceSelector != nil || peer.IPBlock != nil || peer.PodSelector == nil || len(peer.PodSelector.MatchLabels) == 0 {
		return false
	}
	n := 0
	for _, d := range m.deployments {
		if ok, _ := matches(peer.PodSelector, d.Spec.Template.Labels); ok {
			if !runs(d, "git-mirror") {
				return false
			}
			n++
		}
	}
	return n > 0
}

// clusterRanges are the private ranges the git mirror's forge rule must
// leave out, so that it cannot be turned on the cluster's own services.
var clusterRanges = []string{"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16", "fc00::/7"}

// forgePorts are the forge's git ports: HTTPS and SSH.
var forgePorts = []string{"443", "22"}

// checkMirrorPolicy checks one policy that applies to the git mirror's
// pods: reached by bots only; out to the database and to the forge, that
// is addresses outside the cluster on the forge's git ports, nothing else.
func checkMirrorPolicy(m *manifests, p *networkingv1.NetworkPolicy, d *appsv1.Deployment) []error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("network policy %s lets the git mirror %s "+format, append([]any{p.Name, d.Name}, args...)...))
	}
	for _, r := range p.Spec.Ingress {
		if len(r.From) == 0 {
			bad("be reached from anywhere")
		}
		for _, peer := range r.From {
			if peer.NamespaceSelector != nil || peer.IPBlock != nil || peer.PodSelector == nil ||
				!slices.ContainsFunc(m.deployments, func(b *appsv1.Deployment) bool {
					ok, _ := matches(peer.PodSelector, b.Spec.Template.Labels)
					return ok && isBot(b)
				}) ||
				slices.ContainsFunc(m.deployments, func(b *appsv1.Deployment) bool {
					ok, _ := matches(peer.PodSelector, b.Spec.Template.Labels)
					return ok && !isBot(b)
				}) {
				bad("be reached from %+v, not only the bots", peer)
			}
		}
	}
	for _, r := range p.Spec.Egress {
		if len(r.To) == 0 {
			bad("reach any address (an egress rule without to)")
			continue
		}
		for _, peer := range r.To {
			switch {
			case peer.IPBlock != nil:
				for _, c := range clusterRanges {
					if (strings.Contains(c, ":") == strings.Contains(peer.IPBlock.CIDR, ":")) && !slices.Contains(peer.IPBlock.Except, c) {
						bad("reach %s without except %s: the cluster's own addresses", peer.IPBlock.CIDR, c)
					}
				}
				if len(r.Ports) == 0 {
					bad("reach %s on every port, not only the forge's git ports %v", peer.IPBlock.CIDR, forgePorts)
				}
				for _, port := range r.Ports {
					if port.Port == nil || !slices.Contains(forgePorts, port.Port.String()) || port.EndPort != nil {
						bad("reach %s on port %v, not only the forge's git ports %v", peer.IPBlock.CIDR, port.Port, forgePorts)
					}
				}
			case isDNS(peer):
			case peer.PodSelector != nil && peer.PodSelector.MatchLabels[peerLabel] == "database" && len(peer.PodSelector.MatchLabels) == 1:
			default:
				bad("reach %+v: want only the database, DNS and the forge (ipBlock)", peer)
			}
		}
	}
	return errs
}

// forgeEgress reports whether a policy lets its pods reach addresses
// outside the cluster on a forge's git port.
func forgeEgress(p *networkingv1.NetworkPolicy) bool {
	for _, r := range p.Spec.Egress {
		for _, peer := range r.To {
			if peer.IPBlock == nil {
				continue
			}
			for _, port := range r.Ports {
				if port.Port != nil && slices.Contains(forgePorts, port.Port.String()) {
					return true
				}
			}
		}
	}
	return false
}

// checkBotPolicy checks one policy that applies to the bot pods of d.
func checkBotPolicy(m *manifests, p *networkingv1.NetworkPolicy, d *appsv1.Deployment) []error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("network policy %s lets bots of %s "+format, append([]any{p.Name, d.Name}, args...)...))
	}
	// botPeer: a peer that is the bots themselves, in their namespace.
	botPeer := func(peer networkingv1.NetworkPolicyPeer) bool {
		ok, _ := matches(peer.PodSelector, d.Spec.Template.Labels)
		return peer.NamespaceSelector == nil && peer.IPBlock == nil && ok && len(peer.PodSelector.MatchLabels) > 0
	}
	for _, r := range p.Spec.Egress {
		if len(r.To) == 0 {
			bad("reach any address (an egress rule without to): the forge and the internet")
			continue
		}
		for _, peer := range r.To {
			switch {
			case peer.IPBlock != nil:
				bad("reach %s (ipBlock): the forge is out there", peer.IPBlock.CIDR)
			case isDNS(peer), botPeer(peer), mirrorPeer(m, peer):
			case peer.PodSelector != nil && slices.Contains(peers, peer.PodSelector.MatchLabels[peerLabel]) && len(peer.PodSelector.MatchLabels) == 1:
			default:
				bad("reach %+v: want only pods labelled %s: %v, DNS, the git mirror or other bots", peer, peerLabel, peers)
			}
		}
	}
	for _, r := range p.Spec.Ingress {
		if len(r.From) == 0 {
			bad("be reached from anywhere")
		}
		for _, peer := range r.From {
			if !botPeer(peer) {
				bad("be reached from %+v, not only other bots (image peers)", peer)
			}
		}
	}
	return errs
}
