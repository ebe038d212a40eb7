package kubernetes

import (
	"sigs.k8s.io/yaml"
)

// kubeconfig is the part of the kubeconfig format a cluster's files use:
// one cluster, one user with a client certificate, one context.
type kubeconfig struct {
	APIVersion     string         `json:"apiVersion"`
	Kind           string         `json:"kind"`
	Clusters       []namedCluster `json:"clusters"`
	Users          []namedUser    `json:"users"`
	Contexts       []namedContext `json:"contexts"`
	CurrentContext string         `json:"current-context"`
}

type namedCluster struct {
	Name    string `json:"name"`
	Cluster struct {
		Server string `json:"server"`
		CA     []byte `json:"certificate-authority-data"`
	} `json:"cluster"`
}

type namedUser struct {
	Name string `json:"name"`
	User struct {
		Cert []byte `json:"client-certificate-data"`
		Key  []byte `json:"client-key-data"`
	} `json:"user"`
}

type namedContext struct {
	Name    string `json:"name"`
	Context struct {
		Cluster string `json:"cluster"`
		User    string `json:"user"`
	} `json:"context"`
}

// Kubeconfig is a kubeconfig for user (a certificate the cluster's CA
// issued) at server, trusting only the cluster's CA, with one context
// named for the cluster. (The format is small; client-go's writer would
// add 40 MB of Kubernetes API types to the turtles binary.)
func Kubeconfig(cluster, server string, caPEM []byte, user string, p Pair) ([]byte, error) {
	k := kubeconfig{APIVersion: "v1", Kind: "Config", CurrentContext: cluster}
	var c namedCluster
	c.Name, c.Cluster.Server, c.Cluster.CA = cluster, server, caPEM
	var u namedUser
	u.Name, u.User.Cert, u.User.Key = user, p.Cert, p.Key
	var x namedContext
	x.Name, x.Context.Cluster, x.Context.User = cluster, cluster, user
	k.Clusters, k.Users, k.Contexts = []namedCluster{c}, []namedUser{u}, []namedContext{x}
	return yaml.Marshal(k)
}

// ServerOf returns the server of a kubeconfig Kubeconfig wrote.
func ServerOf(b []byte) (string, error) {
	var k kubeconfig
	if err := yaml.Unmarshal(b, &k); err != nil {
		return "", err
	}
	if len(k.Clusters) != 1 {
		return "", errNotOurs
	}
	return k.Clusters[0].Cluster.Server, nil
}
