// Package kubernetes_test checks the Kubernetes manifests beside it, each
// overlay (single-node, distributed) as kustomize renders it: every
// document decodes strictly into its client-go type (a typo'd field is an
// error), the objects refer to each other consistently, no container runs
// as root, every container has requests and limits, budgets and network
// policies are what they claim, the bots hold no forge credentials and
// reach only the broker, the database, the store and each other, and
// every turtles flag, environment variable and config key they use exists
// in the turtles binary. Nothing is deployed.
package kubernetes_test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/yaml"
)

const (
	namespace = "turtles"
	// kustomizationFile is not a Kubernetes object; it is checked apart.
	kustomizationFile = "kustomization.yaml"
	// secretTemplate holds placeholders and is left out of every
	// kustomization; the checks read it for the Secrets' names and keys.
	secretTemplate = "secret.template.yaml"
	// peerLabel marks the pods of RabbitMQ, PostgreSQL and the S3 server
	// that turtles' network policies let its parts reach.
	peerLabel = "turtles-ci.github.io/peer"
)

// strict rejects unknown and duplicate fields, unlike the default decoder.
var strict = serializer.NewCodecFactory(scheme.Scheme, serializer.EnableStrict).UniversalDeserializer()

// manifests is every object of some YAML documents, by kind.
type manifests struct {
	deployments []*appsv1.Deployment
	services    []*corev1.Service
	secrets     map[string]*corev1.Secret
	configMaps  map[string]*corev1.ConfigMap
	claims      map[string]*corev1.PersistentVolumeClaim
	namespaces  map[string]bool
	budgets     []*policyv1.PodDisruptionBudget
	policies    []*networkingv1.NetworkPolicy
}

func newManifests() *manifests {
	return &manifests{secrets: map[string]*corev1.Secret{}, configMaps: map[string]*corev1.ConfigMap{},
		claims: map[string]*corev1.PersistentVolumeClaim{}, namespaces: map[string]bool{}}
}

// add decodes every document of a YAML stream strictly and files it.
func (m *manifests) add(name string, data []byte) error {
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	for i := 1; ; i++ {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s: document %d: %w", name, i, err)
		}
		if j, err := yaml.YAMLToJSON(doc); err == nil && string(j) == "null" {
			continue // comments only
		}
		obj, _, err := strict.Decode(doc, nil, nil)
		if err != nil {
			return fmt.Errorf("%s: document %d: %w", name, i, err)
		}
		if err := m.file(obj); err != nil {
			return fmt.Errorf("%s: document %d: %w", name, i, err)
		}
	}
}

func (m *manifests) file(obj runtime.Object) error {
	ns := ""
	switch o := obj.(type) {
	case *corev1.Namespace:
		m.namespaces[o.Name] = true
		return nil
	case *appsv1.Deployment:
		m.deployments = append(m.deployments, o)
		ns = o.Namespace
	case *corev1.Service:
		m.services = append(m.services, o)
		ns = o.Namespace
	case *corev1.Secret:
		m.secrets[o.Name] = o
		ns = o.Namespace
	case *corev1.ConfigMap:
		m.configMaps[o.Name] = o
		ns = o.Namespace
	case *corev1.PersistentVolumeClaim:
		m.claims[o.Name] = o
		ns = o.Namespace
	case *policyv1.PodDisruptionBudget:
		m.budgets = append(m.budgets, o)
		ns = o.Namespace
	case *networkingv1.NetworkPolicy:
		m.policies = append(m.policies, o)
		ns = o.Namespace
	default:
		return fmt.Errorf("unexpected kind %T: teach this test about it", obj)
	}
	if ns != namespace {
		return fmt.Errorf("%T in namespace %q, want %q", obj, ns, namespace)
	}
	return nil
}

// forgeSecretKeys are the keys of a Secret holding forge credentials or
// the webhook secret, which bots must never see.
var forgeSecretKeys = []string{"github-token", "gitlab-token", "github-app-key", "webhook-secret"}

// forgeFlags and forgeEnv are how turtles reads forge credentials.
var (
	forgeFlags = []string{"github-token-file", "gitlab-token-file", "github-app-key-file", "webhook-secret-file"}
	forgeEnv   = []string{"TURTLES_GITHUB_TOKEN", "TURTLES_GITLAB_TOKEN", "TURTLES_WEBHOOK_SECRET"}
)

// probePaths are the HTTP endpoints each turtles command really serves
// that a probe may use: web.go's /healthz for the reporter and serve,
// /metrics (which asks the queue) for them, the hook and the image server,
// the heartbeat's /healthz of --health-listen for a bot.
var probePaths = map[string][]string{
	"hook":        {"/metrics"},
	"reporter":    {"/healthz", "/metrics"},
	"serve":       {"/healthz", "/metrics"},
	"image serve": {"/metrics"},
	"bot":         {"/healthz"},
	"git-mirror":  {"/healthz"},
}

// command splits a turtles container's args into the subcommand ("image
// serve") and its flags, name to value ("" for a flag without =VALUE).
func command(c corev1.Container) (string, map[string]string) {
	var sub []string
	flags := map[string]string{}
	for i := 0; i < len(c.Args); i++ {
		a := c.Args[i]
		if !strings.HasPrefix(a, "-") {
			if len(flags) == 0 {
				sub = append(sub, a)
			}
			continue
		}
		name, val, ok := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !ok && i+1 < len(c.Args) && !strings.HasPrefix(c.Args[i+1], "-") {
			val = c.Args[i+1]
			i++
		}
		flags[name] = val
	}
	return strings.Join(sub, " "), flags
}

// check returns every inconsistency between the objects.
func check(m *manifests) []error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if !m.namespaces[namespace] {
		bad("no Namespace %s", namespace)
	}
	for _, d := range m.deployments {
		errs = append(errs, checkDeployment(m, d)...)
	}
	for _, s := range m.services {
		errs = append(errs, checkService(m, s)...)
	}
	errs = append(errs, checkBudgets(m)...)
	errs = append(errs, checkPolicies(m)...)
	return errs
}

func selects(selector, labels map[string]string) bool {
	if len(selector) == 0 {
		return false
	}
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func checkService(m *manifests, s *corev1.Service) []error {
	var errs []error
	var pods []*appsv1.Deployment
	for _, d := range m.deployments {
		if selects(s.Spec.Selector, d.Spec.Template.Labels) {
			pods = append(pods, d)
		}
	}
	if len(pods) == 0 {
		return []error{fmt.Errorf("service %s: selector %v matches no Deployment's pods", s.Name, s.Spec.Selector)}
	}
	for _, p := range s.Spec.Ports {
		if p.TargetPort.StrVal == "" {
			errs = append(errs, fmt.Errorf("service %s: port %s: target a named container port", s.Name, p.Name))
			continue
		}
		for _, d := range pods {
			if containerWithPort(d.Spec.Template.Spec, p.TargetPort.StrVal) == nil {
				errs = append(errs, fmt.Errorf("service %s: deployment %s has no container port named %q", s.Name, d.Name, p.TargetPort.StrVal))
			}
		}
	}
	return errs
}

func containerWithPort(pod corev1.PodSpec, name string) *corev1.Container {
	for i, c := range pod.Containers {
		for _, p := range c.Ports {
			if p.Name == name {
				return &pod.Containers[i]
			}
		}
	}
	return nil
}

func checkDeployment(m *manifests, d *appsv1.Deployment) []error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("deployment %s: "+format, append([]any{d.Name}, args...)...))
	}
	pod := d.Spec.Template.Spec
	if d.Spec.Selector == nil || !selects(d.Spec.Selector.MatchLabels, d.Spec.Template.Labels) {
		bad("selector does not match the pod template's labels")
	}
	volumes := map[string]corev1.Volume{}
	for _, v := range pod.Volumes {
		volumes[v.Name] = v
		switch {
		case v.Secret != nil:
			if m.secrets[v.Secret.SecretName] == nil && (v.Secret.Optional == nil || !*v.Secret.Optional) {
				bad("volume %s: no Secret %s", v.Name, v.Secret.SecretName)
			}
			if m.secrets[v.Secret.SecretName] == nil && v.Secret.Optional != nil && *v.Secret.Optional {
				bad("volume %s: optional Secret %s is not in the template either", v.Name, v.Secret.SecretName)
			}
		case v.ConfigMap != nil:
			if m.configMaps[v.ConfigMap.Name] == nil {
				bad("volume %s: no ConfigMap %s", v.Name, v.ConfigMap.Name)
			}
		case v.PersistentVolumeClaim != nil:
			if m.claims[v.PersistentVolumeClaim.ClaimName] == nil {
				bad("volume %s: no PersistentVolumeClaim %s", v.Name, v.PersistentVolumeClaim.ClaimName)
			}
		case v.Projected != nil:
			bad("volume %s: projected volumes are not checked by this test", v.Name)
		}
	}
	for _, c := range append(slices.Clone(pod.InitContainers), pod.Containers...) {
		errs = append(errs, checkNonRoot(d, c)...)
		errs = append(errs, checkResources(d, c)...)
	}
	for _, c := range pod.Containers {
		errs = append(errs, checkContainer(m, d, c, volumes)...)
	}
	return errs
}

func secretHasKey(s *corev1.Secret, key string) bool {
	if _, ok := s.StringData[key]; ok {
		return true
	}
	_, ok := s.Data[key]
	return ok
}

func checkContainer(m *manifests, d *appsv1.Deployment, c corev1.Container, volumes map[string]corev1.Volume) []error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("deployment %s: container %s: "+format, append([]any{d.Name, c.Name}, args...)...))
	}
	sub, flags := command(c)
	paths, known := probePaths[sub]
	if !known {
		bad("runs %q, not a turtles command this test knows", sub)
	}
	for _, p := range []*corev1.Probe{c.ReadinessProbe, c.LivenessProbe, c.StartupProbe} {
		if p == nil {
			continue
		}
		if p.HTTPGet == nil || !slices.Contains(paths, p.HTTPGet.Path) {
			bad("probe on an endpoint turtles %s does not serve (it serves %v)", sub, paths)
			continue
		}
		if n := p.HTTPGet.Port.StrVal; n == "" || !slices.ContainsFunc(c.Ports, func(cp corev1.ContainerPort) bool { return cp.Name == n }) {
			bad("probe port %q is not a named port of the container", p.HTTPGet.Port.String())
		}
	}
	mounted := map[string]bool{}
	for _, vm := range c.VolumeMounts {
		if _, ok := volumes[vm.Name]; !ok {
			bad("mounts undefined volume %s", vm.Name)
		}
		mounted[vm.Name] = true
	}
	// Every file a flag names is a key of a mounted Secret or ConfigMap.
	for name, val := range flags {
		if name == "config" || strings.HasSuffix(name, "-file") || name == "secrets-dir" {
			if err := mountedFile(m, c, volumes, val, name == "secrets-dir"); err != nil {
				bad("--%s=%s: %v", name, val, err)
			}
		}
	}
	for _, e := range c.Env {
		if strings.Contains(e.Value, "://") && strings.Contains(e.Value, "@") {
			bad("env %s holds credentials in plain text; use a secretKeyRef", e.Name)
		}
		if e.ValueFrom == nil {
			continue
		}
		if r := e.ValueFrom.SecretKeyRef; r != nil {
			if s := m.secrets[r.Name]; s == nil || !secretHasKey(s, r.Key) {
				bad("env %s: no Secret %s with key %s", e.Name, r.Name, r.Key)
			}
		}
		if r := e.ValueFrom.ConfigMapKeyRef; r != nil {
			if cm := m.configMaps[r.Name]; cm == nil || cm.Data[r.Key] == "" {
				bad("env %s: no ConfigMap %s with key %s", e.Name, r.Name, r.Key)
			}
		}
	}
	for _, e := range c.EnvFrom {
		if e.SecretRef != nil && m.secrets[e.SecretRef.Name] == nil {
			bad("envFrom: no Secret %s", e.SecretRef.Name)
		}
		if e.ConfigMapRef != nil && m.configMaps[e.ConfigMapRef.Name] == nil {
			bad("envFrom: no ConfigMap %s", e.ConfigMapRef.Name)
		}
	}
	if sub == "bot" {
		errs = append(errs, checkBot(m, d, c, flags, volumes)...)
	}
	return errs
}

// mountedFile checks that path is a key of a Secret or ConfigMap mounted in
// c (or, for a directory, the mount point of a Secret).
func mountedFile(m *manifests, c corev1.Container, volumes map[string]corev1.Volume, path string, dir bool) error {
	for _, vm := range c.VolumeMounts {
		v := volumes[vm.Name]
		var key string
		switch {
		case dir && path == vm.MountPath && vm.SubPath == "" && v.Secret != nil:
			return nil
		case dir:
			continue
		case path == vm.MountPath && vm.SubPath != "":
			key = vm.SubPath
		case strings.HasPrefix(path, vm.MountPath+"/") && vm.SubPath == "":
			key = strings.TrimPrefix(path, vm.MountPath+"/")
		default:
			continue
		}
		switch {
		case v.Secret != nil:
			if s := m.secrets[v.Secret.SecretName]; s == nil || !secretHasKey(s, key) {
				return fmt.Errorf("Secret %s has no key %s", v.Secret.SecretName, key)
			}
			return nil
		case v.ConfigMap != nil:
			if cm := m.configMaps[v.ConfigMap.Name]; cm == nil || cm.Data[key] == "" {
				return fmt.Errorf("ConfigMap %s has no key %s", v.ConfigMap.Name, key)
			}
			return nil
		}
		return fmt.Errorf("volume %s is neither a Secret nor a ConfigMap", vm.Name)
	}
	return errors.New("no Secret or ConfigMap is mounted there")
}

// checkBot checks what is particular to bots: no forge credentials, KVM,
// the shared image cache, peers, time to drain.
func checkBot(m *manifests, d *appsv1.Deployment, c corev1.Container, flags map[string]string, volumes map[string]corev1.Volume) []error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("bot deployment %s: "+format, append([]any{d.Name}, args...)...))
	}
	pod := d.Spec.Template.Spec
	forgeSecret := func(name string) bool {
		s := m.secrets[name]
		return s != nil && slices.ContainsFunc(forgeSecretKeys, func(k string) bool { return secretHasKey(s, k) })
	}
	for _, v := range pod.Volumes {
		if v.Secret != nil && forgeSecret(v.Secret.SecretName) {
			bad("mounts forge credentials (Secret %s)", v.Secret.SecretName)
		}
	}
	for _, bc := range append(slices.Clone(pod.InitContainers), pod.Containers...) {
		for _, e := range bc.Env {
			if slices.Contains(forgeEnv, e.Name) {
				bad("container %s sets %s", bc.Name, e.Name)
			}
			if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil && forgeSecret(e.ValueFrom.SecretKeyRef.Name) {
				bad("container %s reads forge credentials (Secret %s)", bc.Name, e.ValueFrom.SecretKeyRef.Name)
			}
		}
		for _, e := range bc.EnvFrom {
			if e.SecretRef != nil && forgeSecret(e.SecretRef.Name) {
				bad("container %s reads forge credentials (Secret %s)", bc.Name, e.SecretRef.Name)
			}
		}
		_, bf := command(bc)
		for _, f := range forgeFlags {
			if _, ok := bf[f]; ok {
				bad("container %s passes --%s", bc.Name, f)
			}
		}
	}
	// The liveness probe is the heartbeat's endpoint (--health-listen).
	if p := c.LivenessProbe; p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/healthz" {
		bad("no liveness probe on the heartbeat's /healthz (--health-listen)")
	} else {
		_, port, _ := strings.Cut(flags["health-listen"], ":")
		i := slices.IndexFunc(c.Ports, func(cp corev1.ContainerPort) bool { return cp.Name == p.HTTPGet.Port.StrVal })
		if port == "" || i < 0 || fmt.Sprint(c.Ports[i].ContainerPort) != port {
			bad("the liveness probe's port %s is not --health-listen=%s", p.HTTPGet.Port.String(), flags["health-listen"])
		}
	}
	if q, ok := c.Resources.Limits["devices.kubevirt.io/kvm"]; !ok || q.Value() != 1 {
		bad("no limit devices.kubevirt.io/kvm: 1 (without /dev/kvm bots run VMs under TCG)")
	}
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() {
		bad("no CPU and memory requests")
	}
	drain := 10 * time.Minute // the default of --drain-timeout
	if v, ok := flags["drain-timeout"]; ok {
		var err error
		if drain, err = time.ParseDuration(v); err != nil {
			bad("--drain-timeout=%s: %v", v, err)
		}
	}
	if g := pod.TerminationGracePeriodSeconds; g == nil || time.Duration(*g)*time.Second < drain+30*time.Second {
		bad("terminationGracePeriodSeconds shorter than --drain-timeout (%s) plus 30s", drain)
	}
	// The images directory is a hostPath shared by bots and the image server.
	dir := flags["images-dir"]
	var cache string
	for _, vm := range c.VolumeMounts {
		if vm.MountPath == dir {
			cache = vm.Name
		}
	}
	// Directory, not DirectoryOrCreate: the kubelet would create it owned
	// by root, and the bots, which are not, could not write it.
	if hp := volumes[cache].HostPath; cache == "" || hp == nil || hp.Type == nil || *hp.Type != corev1.HostPathDirectory {
		bad("--images-dir=%s is not a hostPath volume of type Directory (prepared on the node for uid 10001)", dir)
	}
	errs = append(errs, checkPeers(m, d, flags["image-peers"], cache)...)
	errs = append(errs, checkBotMirror(m, d, flags)...)
	return errs
}

// checkBotMirror: a bot fetches commits from a git mirror (its policy
// lets it reach no forge), named by a Service in front of turtles
// git-mirror, with the mirror's token (a mounted Secret key, as every
// -file flag; see checkContainer).
func checkBotMirror(m *manifests, d *appsv1.Deployment, flags map[string]string) []error {
	bad := func(format string, args ...any) []error {
		return []error{fmt.Errorf("bot deployment %s: "+format, append([]any{d.Name}, args...)...)}
	}
	mirror := flags["git-mirror"]
	if mirror == "" {
		return bad("no --git-mirror: bots would clone from the forge, which they must not reach")
	}
	if flags["git-mirror-token-file"] == "" {
		return bad("--git-mirror without --git-mirror-token-file")
	}
	u, err := url.Parse(mirror)
	if err != nil || u.Scheme != "http" && u.Scheme != "https" {
		return bad("--git-mirror=%s is not an http(s) URL", mirror)
	}
	name, _, _ := strings.Cut(u.Hostname(), ".")
	for _, s := range m.services {
		if s.Name != name {
			continue
		}
		for _, md := range m.deployments {
			if selects(s.Spec.Selector, md.Spec.Template.Labels) && runs(md, "git-mirror") {
				return nil
			}
		}
		return bad("--git-mirror=%s: Service %s selects no turtles git-mirror", mirror, name)
	}
	return bad("--git-mirror=%s: no Service %s", mirror, name)
}

// checkPeers checks that --image-peers names a headless Service in front of
// a `turtles image serve` on the bots' image cache.
func checkPeers(m *manifests, d *appsv1.Deployment, peers, cache string) []error {
	host, port, _ := strings.Cut(peers, ":")
	if port == "" {
		port = "8080"
	}
	name, _, _ := strings.Cut(host, ".")
	if want := name + "." + namespace + ".svc.cluster.local"; host != name && host != want && host != name+"."+namespace {
		return []error{fmt.Errorf("bot deployment %s: --image-peers=%s: want %s", d.Name, peers, want)}
	}
	for _, s := range m.services {
		if s.Name != name {
			continue
		}
		if s.Spec.ClusterIP != corev1.ClusterIPNone {
			return []error{fmt.Errorf("service %s: --image-peers needs a headless Service (clusterIP: None)", name)}
		}
		if !selects(s.Spec.Selector, d.Spec.Template.Labels) {
			return []error{fmt.Errorf("service %s does not select the bots", name)}
		}
		for _, p := range s.Spec.Ports {
			srv := containerWithPort(d.Spec.Template.Spec, p.TargetPort.StrVal)
			if srv == nil || fmt.Sprint(p.Port) != port {
				continue
			}
			sub, flags := command(*srv)
			if sub != "image serve" || flags["images-dir"] == "" {
				return []error{fmt.Errorf("service %s: port %d is not a turtles image serve", name, p.Port)}
			}
			for _, vm := range srv.VolumeMounts {
				if vm.MountPath == flags["images-dir"] && vm.Name == cache {
					return nil
				}
			}
			return []error{fmt.Errorf("service %s: the image server does not serve the bots' cache volume %s", name, cache)}
		}
		return []error{fmt.Errorf("service %s has no port %s (--image-peers=%s)", name, port, peers)}
	}
	return []error{fmt.Errorf("bot deployment %s: --image-peers=%s: no Service %s", d.Name, peers, name)}
}

func TestManifests(t *testing.T) {
	parts := map[string][]string{"single-node": {"serve"}, "distributed": {"bot", "git-mirror", "hook", "reporter"}}
	for _, o := range overlays {
		t.Run(o, func(t *testing.T) {
			m := loadOverlay(t, o)
			for _, err := range check(m) {
				t.Error(err)
			}
			var got []string
			for _, d := range m.deployments {
				sub, _ := command(d.Spec.Template.Spec.Containers[0])
				got = append(got, sub)
			}
			slices.Sort(got)
			if !slices.Equal(got, parts[o]) {
				t.Errorf("Deployments run %q, want %q", got, parts[o])
			}
		})
	}
}

// TestSecretTemplate keeps real secrets out of the repository: every value
// of the template is a marked placeholder.
func TestSecretTemplate(t *testing.T) {
	b, err := os.ReadFile(secretTemplate)
	if err != nil {
		t.Fatal(err)
	}
	m := newManifests()
	if err := m.add(secretTemplate, b); err != nil {
		t.Fatal(err)
	}
	if len(m.secrets) == 0 || len(m.deployments)+len(m.services)+len(m.configMaps) > 0 {
		t.Fatalf("%s should hold only Secrets", secretTemplate)
	}
	for name, s := range m.secrets {
		if len(s.Data) > 0 {
			t.Errorf("Secret %s: use stringData placeholders, not data", name)
		}
		for k, v := range s.StringData {
			if !strings.Contains(v, "REPLACE-ME") {
				t.Errorf("Secret %s key %s: not a REPLACE-ME placeholder", name, k)
			}
		}
	}
}

// TestStrict proves the decoder refuses what the API server would refuse
// (or, worse, silently drop), and that the cross-reference checks bite.
func TestStrict(t *testing.T) {
	const ns = "apiVersion: v1\nkind: Namespace\nmetadata: {name: turtles}\n---\n" +
		"apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: deny, namespace: turtles}\nspec: {podSelector: {}, policyTypes: [Ingress, Egress]}\n---\n"
	deployment := func(spec string) string {
		return ns + `apiVersion: apps/v1
kind: Deployment
metadata: {name: d, namespace: turtles}
spec:
  selector: {matchLabels: {app: d}}
  template:
    metadata: {labels: {app: d}}
    spec:
` + spec
	}
	const container = `      securityContext: {runAsNonRoot: true, runAsUser: 10001}
      containers:
        - name: c
          image: x
          args: [hook, --listen=:8080]
          ports: [{name: http, containerPort: 8080}]
          securityContext: {allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: {drop: [ALL]}}
          resources: {requests: {cpu: 10m, memory: 10Mi}, limits: {cpu: 100m, memory: 100Mi}}
`
	// A bot, as far as these cases need one: it is not a complete bot.
	bot := strings.Replace(container, "args: [hook, --listen=:8080]", "args: [bot, --health-listen=:8081]", 1)
	for _, tc := range []struct {
		name, yaml string
		decodeErr  string // in the decode error; "" decodes
		checkErr   string // in one of the check errors; "" passes
		// clean: no check error has it (the case's deployments need not
		// pass every check: a bot here is not a complete bot).
		clean string
	}{
		{name: "valid", yaml: deployment(container)},
		{name: "typo in spec", yaml: strings.Replace(deployment(container), "  selector:", "  replica: 3\n  selector:", 1), decodeErr: `unknown field "spec.replica"`},
		{name: "typo in container", yaml: deployment(container + "          imagePulPolicy: Always\n"), decodeErr: `unknown field "spec.template.spec.containers[0].imagePulPolicy"`},
		{name: "duplicate field", yaml: deployment(container + "          image: other\n"), decodeErr: `already set`},
		{name: "unknown kind", yaml: "apiVersion: v1\nkind: Turtle\nmetadata: {name: t}\n", decodeErr: "no kind"},
		{name: "wrong namespace", yaml: strings.Replace(deployment(container), "namespace: turtles", "namespace: default", 1), decodeErr: `namespace "default"`},
		{name: "service selects nothing", yaml: deployment(container) + "---\napiVersion: v1\nkind: Service\nmetadata: {name: s, namespace: turtles}\nspec: {selector: {app: x}, ports: [{port: 80, targetPort: http}]}\n",
			checkErr: "matches no Deployment"},
		{name: "service port name unknown", yaml: deployment(container) + "---\napiVersion: v1\nkind: Service\nmetadata: {name: s, namespace: turtles}\nspec: {selector: {app: d}, ports: [{port: 80, targetPort: web}]}\n",
			checkErr: `no container port named "web"`},
		{name: "missing secret", yaml: deployment(container + "          env: [{name: TURTLES_QUEUE, valueFrom: {secretKeyRef: {name: mq, key: url}}}]\n"),
			checkErr: "no Secret mq"},
		{name: "invented probe", yaml: deployment(container + "          readinessProbe: {httpGet: {path: /healthz, port: http}}\n"),
			checkErr: "does not serve"},
		{name: "bot with forge token", yaml: deployment(`      securityContext: {runAsNonRoot: true, runAsUser: 10001}
      containers:
        - name: c
          image: x
          args: [bot, --github-token-file=/f/github-token]
          volumeMounts: [{name: f, mountPath: /f}]
          securityContext: {allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: {drop: [ALL]}}
          resources: {requests: {cpu: 10m, memory: 10Mi}, limits: {cpu: 100m, memory: 100Mi}}
      volumes: [{name: f, secret: {secretName: forge}}]
`) + "---\napiVersion: v1\nkind: Secret\nmetadata: {name: forge, namespace: turtles}\nstringData: {github-token: x}\n",
			checkErr: "mounts forge credentials"},
		{name: "root pod", yaml: deployment(strings.Replace(container, "runAsNonRoot: true, runAsUser: 10001", "runAsUser: 0", 1)),
			checkErr: "runs as root"},
		{name: "no runAsNonRoot", yaml: deployment(strings.Replace(container, "runAsNonRoot: true, ", "", 1)),
			checkErr: "runAsNonRoot"},
		{name: "privilege escalation", yaml: deployment(strings.Replace(container, "allowPrivilegeEscalation: false", "allowPrivilegeEscalation: true", 1)),
			checkErr: "allowPrivilegeEscalation"},
		{name: "capabilities kept", yaml: deployment(strings.Replace(container, "drop: [ALL]", "drop: [NET_RAW]", 1)),
			checkErr: "drop ALL"},
		{name: "no memory limit", yaml: deployment(strings.Replace(container, "limits: {cpu: 100m, memory: 100Mi}", "limits: {cpu: 100m}", 1)),
			checkErr: "memory limit"},
		{name: "budget blocks drains", yaml: deployment(container) + "---\napiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata: {name: p, namespace: turtles}\nspec: {minAvailable: 1, selector: {matchLabels: {app: d}}}\n",
			checkErr: "blocks every drain"},
		{name: "no default deny", yaml: strings.Replace(deployment(container), "policyTypes: [Ingress, Egress]}", "policyTypes: [Ingress]}", 1),
			checkErr: "denies all traffic"},
		{name: "bot egress to the internet", yaml: deployment(bot) + botPolicy("[{to: [{ipBlock: {cidr: 0.0.0.0/0}}]}]"), checkErr: "ipBlock"},
		{name: "bot egress anywhere", yaml: deployment(bot) + botPolicy("[{ports: [{port: 443}]}]"), checkErr: "without to"},
		{name: "bot egress to the forge's pods", yaml: deployment(bot) + botPolicy("[{to: [{namespaceSelector: {}, podSelector: {matchLabels: {app: gitlab}}}]}]"),
			checkErr: "want only pods labelled"},
		{name: "bot without heartbeat probe", yaml: deployment(bot), checkErr: "no liveness probe on the heartbeat"},
		{name: "bot without git mirror", yaml: deployment(bot), checkErr: "no --git-mirror"},
		{name: "bot with a git mirror that is not one", yaml: deployment(strings.Replace(bot, "--health-listen=:8081", "--health-listen=:8081, --git-mirror=http://forge, --git-mirror-token-file=/t", 1)),
			checkErr: "no Service forge"},
		{name: "mirror valid", yaml: deployment(bot) + mirror + mirrorPolicy(mirrorIngress, mirrorEgress), clean: "network policy"},
		{name: "bot egress to the mirror", yaml: deployment(bot) + mirror + mirrorPolicy(mirrorIngress, mirrorEgress) + botPolicy("[{to: [{podSelector: {matchLabels: {app: m}}}]}]"),
			clean: "network policy"},
		{name: "mirror reached from anywhere", yaml: deployment(bot) + mirror + mirrorPolicy("[{ports: [{port: http}]}]", mirrorEgress),
			checkErr: "be reached from anywhere"},
		{name: "mirror reached by others", yaml: deployment(bot) + mirror + mirrorPolicy("[{from: [{namespaceSelector: {}}]}]", mirrorEgress),
			checkErr: "not only the bots"},
		{name: "mirror egress into the cluster", yaml: deployment(bot) + mirror + mirrorPolicy(mirrorIngress, "[{to: [{ipBlock: {cidr: 0.0.0.0/0}}], ports: [{port: 443}]}]"),
			checkErr: "without except 10.0.0.0/8"},
		{name: "mirror egress on every port", yaml: deployment(bot) + mirror + mirrorPolicy(mirrorIngress, strings.Replace(mirrorEgress, ", ports: [{port: 443}, {port: 22}]", "", 1)),
			checkErr: "on every port"},
		{name: "mirror without the forge", yaml: deployment(bot) + mirror + mirrorPolicy(mirrorIngress, "[]"),
			checkErr: "reach the forge"},
		{name: "policy selects nothing", yaml: deployment(container) + "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: turtles}\nspec: {podSelector: {matchLabels: {app: typo}}, policyTypes: [Egress]}\n",
			checkErr: "selects no Deployment"},
		{name: "budget selects nothing", yaml: deployment(container) + "---\napiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata: {name: p, namespace: turtles}\nspec: {maxUnavailable: 1, selector: {matchLabels: {app: x}}}\n",
			checkErr: "selects no Deployment"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := newManifests()
			err := m.add(tc.name, []byte(tc.yaml))
			if tc.decodeErr == "" && err != nil {
				t.Fatalf("decode: %v", err)
			}
			if tc.decodeErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.decodeErr) {
					t.Fatalf("decode error %v, want one with %q", err, tc.decodeErr)
				}
				return
			}
			errs := check(m)
			switch {
			case tc.clean != "":
				if i := slices.IndexFunc(errs, func(err error) bool { return strings.Contains(err.Error(), tc.clean) }); i >= 0 {
					t.Fatalf("check: %v", errs[i])
				}
			case tc.checkErr == "" && len(errs) > 0:
				t.Fatalf("check: %v", errors.Join(errs...))
			case tc.checkErr != "" && !slices.ContainsFunc(errs, func(err error) bool { return strings.Contains(err.Error(), tc.checkErr) }):
				t.Fatalf("check errors %v, want one with %q", errors.Join(errs...), tc.checkErr)
			}
		})
	}
}

// The git mirror of TestStrict: a Deployment m running turtles
// git-mirror, and the parts of its policy.
const (
	mirror = `---
apiVersion: apps/v1
kind: Deployment
metadata: {name: m, namespace: turtles}
spec:
  selector: {matchLabels: {app: m}}
  template:
    metadata: {labels: {app: m}}
    spec:
      securityContext: {runAsNonRoot: true, runAsUser: 10001}
      containers:
        - name: c
          image: x
          args: [git-mirror, --listen=:8080]
          ports: [{name: http, containerPort: 8080}]
          securityContext: {allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: {drop: [ALL]}}
          resources: {requests: {cpu: 10m, memory: 10Mi}, limits: {cpu: 100m, memory: 100Mi}}
`
	mirrorIngress = "[{from: [{podSelector: {matchLabels: {app: d}}}], ports: [{port: http}]}]"
	mirrorEgress  = "[{to: [{ipBlock: {cidr: 0.0.0.0/0, except: [10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16, 169.254.0.0/16]}}], ports: [{port: 443}, {port: 22}]}]"
)

// mirrorPolicy is a NetworkPolicy for TestStrict's git mirror m.
func mirrorPolicy(ingress, egress string) string {
	return "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: mirror, namespace: turtles}\n" +
		"spec: {podSelector: {matchLabels: {app: m}}, policyTypes: [Ingress, Egress], ingress: " + ingress + ", egress: " + egress + "}\n"
}

// botPolicy is a NetworkPolicy for TestStrict's deployment d, made a
// bot's by its args (the yaml is the test's deployment with args bot),
// with egress rules.
func botPolicy(egress string) string {
	return "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: bots, namespace: turtles}\n" +
		"spec: {podSelector: {matchLabels: {app: d}}, policyTypes: [Egress], egress: " + egress + "}\n"
}

// TestTurtlesFlags builds turtles and checks that every flag the
// containers pass is listed by `turtles COMMAND --help`, that every TURTLES_*
// variable they set is one turtles reads, and that the ConfigMap's config
// file loads.
func TestTurtlesFlags(t *testing.T) {
	m := newManifests()
	for _, o := range overlays {
		om := loadOverlay(t, o)
		m.deployments = append(m.deployments, om.deployments...)
		for name, cm := range om.configMaps {
			m.configMaps[o+"/"+name] = cm
		}
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "turtles")
	if out, err := run("go", "build", "-o", bin, "../../cmd/turtles"); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	secretEnv := envLiterals(t)
	helps := map[string]map[string]bool{}
	flagsOf := func(sub string) map[string]bool {
		if f, ok := helps[sub]; ok {
			return f
		}
		out, err := run(bin, append(strings.Fields(sub), "--help")...)
		if err != nil {
			t.Fatalf("turtles %s --help: %v\n%s", sub, err, out)
		}
		f := map[string]bool{}
		for _, mm := range regexp.MustCompile(`(?m)^\s+(?:-\w, )?--([a-z0-9-]+)`).FindAllStringSubmatch(out, -1) {
			f[mm[1]] = true
		}
		helps[sub] = f
		return f
	}
	for _, d := range m.deployments {
		for _, c := range d.Spec.Template.Spec.Containers {
			sub, flags := command(c)
			known := flagsOf(sub)
			for name := range flags {
				if !known[name] {
					t.Errorf("deployment %s: container %s: turtles %s has no --%s", d.Name, c.Name, sub, name)
				}
			}
			for _, e := range c.Env {
				if !strings.HasPrefix(e.Name, "TURTLES_") {
					continue
				}
				flag := strings.ToLower(strings.ReplaceAll(strings.TrimPrefix(e.Name, "TURTLES_"), "_", "-"))
				if !known[flag] && !secretEnv[e.Name] {
					t.Errorf("deployment %s: container %s: turtles %s reads no %s (no --%s)", d.Name, c.Name, sub, e.Name, flag)
				}
			}
		}
	}
	for name, cm := range m.configMaps {
		for key, body := range cm.Data {
			f := filepath.Join(dir, strings.ReplaceAll(name, "/", "-")+"-"+key)
			if err := os.WriteFile(f, []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
			// A cheap command that loads settings strictly and validates them.
			if out, err := run(bin, "image", "list", "--config", f, "--data-dir", filepath.Join(dir, "data")); err != nil {
				t.Errorf("ConfigMap %s key %s does not load as a turtles config: %v\n%s", name, key, err, out)
			}
		}
	}
}

// envLiterals are the TURTLES_* variables turtles reads by name rather
// than as a flag's TURTLES_ + upper snake case (secrets such as
// TURTLES_S3_ACCESS_KEY), found in the command's source.
func envLiterals(t *testing.T) map[string]bool {
	t.Helper()
	files, err := filepath.Glob("../../cmd/turtles/*.go")
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]bool{}
	re := regexp.MustCompile(`"(TURTLES_[A-Z0-9_]+)"`)
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, mm := range re.FindAllSubmatch(b, -1) {
			env[string(mm[1])] = true
		}
	}
	if !env["TURTLES_S3_ACCESS_KEY"] {
		t.Fatal("found no TURTLES_S3_ACCESS_KEY in cmd/turtles: has the code moved?")
	}
	return env
}

// run runs a command and returns its combined output.
func run(name string, args ...string) (string, error) {
	out, err := exec.Command(name, args...).CombinedOutput()
	return string(out), err
}
