package kubernetes

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/turtles-ci/turtles/cluster"
)

var errNotOurs = errors.New("not a kubeconfig of a turtles cluster (one cluster, one user)")

// client talks to a cluster's API server from the host, as its
// administrator: the few calls Provision makes, over plain HTTPS and JSON
// (client-go's typed clients would add 40 MB to the turtles binary).
type client struct {
	server string
	hc     *http.Client
}

func newClient(server string, caPEM []byte, admin Pair) (*client, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, errors.New("kubernetes: the cluster's CA is not PEM")
	}
	cert, err := tls.X509KeyPair(admin.Cert, admin.Key)
	if err != nil {
		return nil, err
	}
	return &client{server: server, hc: &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
	}}}, nil
}

// apiError is an answer of the API server that is not a success.
type apiError struct {
	Code int
	Body string
}

func (e *apiError) Error() string {
	return fmt.Sprintf("%d %s: %s", e.Code, http.StatusText(e.Code), strings.TrimSpace(e.Body))
}

// do sends body (JSON) to path with method and decodes the answer into
// out (nil: discarded); contentType is the body's.
func (c *client) do(ctx context.Context, method, path, contentType string, body []byte, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, c.server+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", contentType)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		return &apiError{Code: resp.StatusCode, Body: string(b)}
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
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
		req, err := http.NewRequestWithContext(ctx, "GET", c.server+"/readyz", nil)
		if err != nil {
			return false, "", err
		}
		resp, err := c.hc.Do(req)
		if err != nil {
			return false, err.Error(), nil
		}
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		return resp.StatusCode == 200 && strings.TrimSpace(string(b)) == "ok", string(b), nil
	})
}

// nodeList is what waitNodes reads of GET /api/v1/nodes.
type nodeList struct {
	Items []struct {
		Metadata struct {
			Name string `json:"name"`
		} `json:"metadata"`
		Status struct {
			Conditions []struct {
				Type   string `json:"type"`
				Status string `json:"status"`
			} `json:"conditions"`
		} `json:"status"`
	} `json:"items"`
}

// waitNodes waits until every node of cl is registered and Ready,
// labelling node01 as the control plane once it is registered; ready is
// told of each node as it becomes Ready.
func (c *client) waitNodes(ctx context.Context, cl *cluster.Cluster, ready func(host string)) error {
	told := map[string]bool{}
	labelled := false
	control := cl.Nodes[0].Host
	return poll(ctx, time.Second, "wait for every node to be Ready", func(ctx context.Context) (bool, string, error) {
		var nodes nodeList
		if err := c.do(ctx, "GET", "/api/v1/nodes", "", nil, &nodes); err != nil {
			return false, err.Error(), nil
		}
		for _, n := range nodes.Items {
			name := n.Metadata.Name
			if name == control && !labelled {
				patch := `{"metadata":{"labels":{"node-role.kubernetes.io/control-plane":""}}}`
				if err := c.do(ctx, "PATCH", "/api/v1/nodes/"+name, "application/merge-patch+json", []byte(patch), nil); err == nil {
					labelled = true
				}
			}
			for _, cond := range n.Status.Conditions {
				if cond.Type == "Ready" && cond.Status == "True" && !told[name] {
					told[name] = true
					ready(name)
				}
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

// dnsName is the name of the cluster DNS's objects in kube-system.
const dnsName = "turtles-dns"

// dnsObjects are the cluster DNS: its service account, its right to read
// services and endpoints, its deployment and its service at DNSServiceIP,
// each with the path it is created at.
var dnsObjects = []struct{ path, yaml string }{
	{"/api/v1/namespaces/kube-system/serviceaccounts", `
apiVersion: v1
kind: ServiceAccount
metadata: {name: turtles-dns, namespace: kube-system}
`},
	{"/apis/rbac.authorization.k8s.io/v1/clusterroles", `
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: turtles-dns}
rules:
  - {apiGroups: [""], resources: [services], verbs: [list, watch]}
  - {apiGroups: [discovery.k8s.io], resources: [endpointslices], verbs: [list, watch]}
`},
	{"/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", `
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: turtles-dns}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: turtles-dns}
subjects: [{kind: ServiceAccount, name: turtles-dns, namespace: kube-system}]
`},
	{"/apis/apps/v1/namespaces/kube-system/deployments", `
apiVersion: apps/v1
kind: Deployment
metadata: {name: turtles-dns, namespace: kube-system, labels: {k8s-app: turtles-dns}}
spec:
  replicas: 1
  selector: {matchLabels: {k8s-app: turtles-dns}}
  template:
    metadata: {labels: {k8s-app: turtles-dns}}
    spec:
      serviceAccountName: turtles-dns
      dnsPolicy: Default
      priorityClassName: system-cluster-critical
      tolerations: [{key: node-role.kubernetes.io/control-plane, effect: NoSchedule}]
      containers:
        - name: dns
          image: ` + DNSImage + `
          imagePullPolicy: Never
          ports:
            - {name: dns, containerPort: 53, protocol: UDP}
            - {name: dns-tcp, containerPort: 53, protocol: TCP}
`},
	{"/api/v1/namespaces/kube-system/services", `
apiVersion: v1
kind: Service
metadata: {name: turtles-dns, namespace: kube-system, labels: {k8s-app: turtles-dns}}
spec:
  clusterIP: ` + DNSServiceIP + `
  selector: {k8s-app: turtles-dns}
  ports:
    - {name: dns, port: 53, targetPort: 53, protocol: UDP}
    - {name: dns-tcp, port: 53, targetPort: 53, protocol: TCP}
`},
}

// setUp makes the cluster's own objects: the cluster DNS. The API server
// may still be finishing its own start (its RBAC roles, the priority
// classes): each is retried until ctx ends; one made before is fine.
func (c *client) setUp(ctx context.Context) error {
	for _, o := range dnsObjects {
		body, err := yaml.YAMLToJSON([]byte(o.yaml))
		if err != nil {
			return fmt.Errorf("kubernetes: object for %s: %w", o.path, err)
		}
		err = poll(ctx, time.Second, "make the cluster DNS", func(ctx context.Context) (bool, string, error) {
			err := c.do(ctx, "POST", o.path, "application/json", body, nil)
			var ae *apiError
			if err == nil || errors.As(err, &ae) && ae.Code == http.StatusConflict {
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
		var d struct {
			Status struct {
				ReadyReplicas int `json:"readyReplicas"`
			} `json:"status"`
		}
		if err := c.do(ctx, "GET", "/apis/apps/v1/namespaces/kube-system/deployments/"+dnsName, "", nil, &d); err != nil {
			return false, err.Error(), nil
		}
		return d.Status.ReadyReplicas >= 1, fmt.Sprintf("%d of 1 ready", d.Status.ReadyReplicas), nil
	})
}
