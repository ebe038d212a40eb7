package kubernetes

import (
	"archive/tar"
	"bytes"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/pem"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"k8s.io/client-go/tools/clientcmd"
)

func parseCert(t *testing.T, b []byte) *x509.Certificate {
	t.Helper()
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatalf("no PEM in %q", b)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestPKI: a cluster's certificates verify against its own CA for their
// use, as whom Kubernetes takes them, and never against another
// cluster's CA (a fresh one each time).
func TestPKI(t *testing.T) {
	a, err := NewCA("a")
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewCA("a") // the same name, another cluster
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(a.PEM, b.PEM) || a.Cert.PublicKey.(*ecdsa.PublicKey).Equal(b.Cert.PublicKey) {
		t.Fatal("two clusters share a CA")
	}
	server, err := a.Issue(CertRequest{CommonName: "kube-apiserver", Server: true, DNS: []string{"kubernetes"},
		IPs: []netip.Addr{netip.MustParseAddr("127.0.0.1")}})
	if err != nil {
		t.Fatal(err)
	}
	client, err := a.Issue(CertRequest{CommonName: "system:node:node02", Orgs: []string{"system:nodes"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name  string
		pair  Pair
		ca    *CA
		usage x509.ExtKeyUsage
		host  string
		ok    bool
	}{
		{"server by IP", server, a, x509.ExtKeyUsageServerAuth, "127.0.0.1", true},
		{"server by name", server, a, x509.ExtKeyUsageServerAuth, "kubernetes", true},
		{"server, a name it was not issued for", server, a, x509.ExtKeyUsageServerAuth, "evil.example", false},
		{"server under another cluster's CA", server, b, x509.ExtKeyUsageServerAuth, "127.0.0.1", false},
		{"client", client, a, x509.ExtKeyUsageClientAuth, "", true},
		{"client as a server", client, a, x509.ExtKeyUsageServerAuth, "", false},
		{"client under another cluster's CA", client, b, x509.ExtKeyUsageClientAuth, "", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			pool := x509.NewCertPool()
			pool.AddCert(tt.ca.Cert)
			_, err := parseCert(t, tt.pair.Cert).Verify(x509.VerifyOptions{Roots: pool, DNSName: tt.host, KeyUsages: []x509.ExtKeyUsage{tt.usage}})
			if (err == nil) != tt.ok {
				t.Errorf("verify: %v, want ok %v", err, tt.ok)
			}
		})
	}
	c := parseCert(t, client.Cert)
	if c.Subject.CommonName != "system:node:node02" || len(c.Subject.Organization) != 1 || c.Subject.Organization[0] != "system:nodes" {
		t.Errorf("client subject %v", c.Subject)
	}
	if blk, _ := pem.Decode(server.Key); blk == nil || blk.Type != "PRIVATE KEY" {
		t.Errorf("server key is not a PEM private key")
	}
}

// TestWriteTar: the tar a node gets holds every file, keys and
// kubeconfigs readable by root only, and no directory whose mode tar
// would change (/root is 0700).
func TestWriteTar(t *testing.T) {
	var buf bytes.Buffer
	files := map[string][]byte{
		"etc/kubernetes/pki/ca.key":   []byte("k"),
		"etc/kubernetes/pki/ca.crt":   []byte("c"),
		"etc/kubernetes/kubelet.conf": []byte("kc"),
		"root/.kube/config":           []byte("kc"),
	}
	if err := writeTar(&buf, files); err != nil {
		t.Fatal(err)
	}
	got := map[string]int64{}
	tr := tar.NewReader(&buf)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got[h.Name] = h.Mode
	}
	want := map[string]int64{
		"etc/kubernetes/pki/ca.key": 0o600, "etc/kubernetes/pki/ca.crt": 0o644, "etc/kubernetes/kubelet.conf": 0o600,
		"root/.kube/config": 0o600,
	}
	for n, m := range want {
		if got[n] != m {
			t.Errorf("%s: mode %o, want %o (all: %v)", n, got[n], m, got)
		}
	}
	if len(got) != len(want) {
		t.Errorf("entries %v, want %v", got, want)
	}
}

// TestBinaryImage: the same binary makes the same image, byte for byte
// (node image names depend on it), and another binary another one.
func TestBinaryImage(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "pause")
	os.WriteFile(bin, []byte("#!/bin/true\n"), 0o755)
	digest := func() string {
		img, err := BinaryImage{Tag: PauseImage, Binary: bin}.Image()
		if err != nil {
			t.Fatal(err)
		}
		d, err := img.Digest()
		if err != nil {
			t.Fatal(err)
		}
		cf, _ := img.ConfigFile()
		if len(cf.Config.Entrypoint) != 1 || cf.Config.Entrypoint[0] != "/pause" {
			t.Errorf("entrypoint %v", cf.Config.Entrypoint)
		}
		return d.String()
	}
	first := digest()
	if again := digest(); again != first {
		t.Errorf("digest %s then %s", first, again)
	}
	os.WriteFile(bin, []byte("#!/bin/false\n"), 0o755)
	if other := digest(); other == first {
		t.Error("another binary, the same image")
	}
	if err := (BinaryImage{Tag: PauseImage, Binary: bin}).Write(filepath.Join(dir, "pause.tar")); err != nil {
		t.Fatal(err)
	}
}

// TestKubeconfig: what Kubeconfig writes is a kubeconfig client-go (and
// so kubectl) reads: the server, the CA, the user's certificate and key.
func TestKubeconfig(t *testing.T) {
	ca, err := NewCA("c1")
	if err != nil {
		t.Fatal(err)
	}
	p, err := ca.Issue(CertRequest{CommonName: "turtles-admin", Orgs: []string{"system:masters"}})
	if err != nil {
		t.Fatal(err)
	}
	b, err := Kubeconfig("c1", "https://127.0.0.1:4443", ca.PEM, "turtles-admin", p)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := clientcmd.RESTConfigFromKubeConfig(b)
	if err != nil {
		t.Fatalf("client-go reads it: %v\n%s", err, b)
	}
	if cfg.Host != "https://127.0.0.1:4443" || !bytes.Equal(cfg.CAData, ca.PEM) || !bytes.Equal(cfg.CertData, p.Cert) || !bytes.Equal(cfg.KeyData, p.Key) {
		t.Errorf("client-go read %+v", cfg)
	}
	if s, err := ServerOf(b); err != nil || s != "https://127.0.0.1:4443" {
		t.Errorf("ServerOf = %q, %v", s, err)
	}
	if _, err := ServerOf([]byte("clusters: []\n")); err == nil {
		t.Error("ServerOf of a kubeconfig without a cluster: no error")
	}
}
