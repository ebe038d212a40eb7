package vm

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"os"
	"strings"

	"github.com/kdomanski/iso9660"
	"golang.org/x/crypto/ssh"
)

// SeedLabel is the volume label cloud-init's NoCloud datasource looks for.
const SeedLabel = "cidata"

// newKey makes the per-machine ed25519 key pair: the private key in
// OpenSSH PEM form (for the key file host-mode commands use), the signer
// turtles authenticates with, and the authorized_keys line.
func newKey() (privPEM []byte, signer ssh.Signer, authorized string, err error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, nil, "", err
	}
	return keyOfPrivate(priv)
}

// NewKey makes an ed25519 key in OpenSSH PEM form, for Config.Key: one
// key for the machines of a run.
func NewKey() ([]byte, error) {
	b, _, _, err := newKey()
	return b, err
}

// parseKey reads a key NewKey made.
func parseKey(privPEM []byte) ([]byte, ssh.Signer, string, error) {
	raw, err := ssh.ParseRawPrivateKey(privPEM)
	if err != nil {
		return nil, nil, "", fmt.Errorf("the machine's key: %w", err)
	}
	priv, ok := raw.(*ed25519.PrivateKey)
	if !ok {
		return nil, nil, "", fmt.Errorf("the machine's key is a %T, want ed25519", raw)
	}
	_, signer, authorized, err := keyOfPrivate(*priv)
	return privPEM, signer, authorized, err
}

func keyOfPrivate(priv ed25519.PrivateKey) (privPEM []byte, signer ssh.Signer, authorized string, err error) {
	pub := priv.Public().(ed25519.PublicKey)
	block, err := ssh.MarshalPrivateKey(priv, "turtles")
	if err != nil {
		return nil, nil, "", err
	}
	signer, err = ssh.NewSignerFromKey(priv)
	if err != nil {
		return nil, nil, "", err
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		return nil, nil, "", err
	}
	authorized = strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sshPub))) + " turtles"
	return pem.EncodeToMemory(block), signer, authorized, nil
}

// seedFiles are the files of the seed disk. user-data and meta-data are
// cloud-init's NoCloud format, for standard cloud images; authorized_keys
// is read by image/debian's first-boot unit, for images without
// cloud-init. Both authorize the key for root (and cloud-init also for
// the image's default user).
func seedFiles(name, authorized string) map[string]string {
	return map[string]string{
		"meta-data": fmt.Sprintf("instance-id: %s\nlocal-hostname: %s\n", name, name),
		"user-data": "#cloud-config\n" +
			"disable_root: false\n" +
			"ssh_pwauth: false\n" +
			"ssh_authorized_keys:\n  - " + authorized + "\n",
		"authorized_keys": authorized + "\n",
	}
}

// writeSeed writes the seed ISO (ISO 9660, label cidata) to path.
func writeSeed(path string, files map[string]string) error {
	w, err := iso9660.NewWriter()
	if err != nil {
		return fmt.Errorf("seed: %w", err)
	}
	defer w.Cleanup()
	for name, content := range files {
		if err := w.AddFile(bytes.NewReader([]byte(content)), name); err != nil {
			return fmt.Errorf("seed %s: %w", name, err)
		}
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("seed: %w", err)
	}
	if err := w.WriteTo(f, SeedLabel); err != nil {
		f.Close()
		return fmt.Errorf("seed: %w", err)
	}
	return f.Close()
}

// WriteSeed writes a seed disk for machine name with a fresh key that
// nobody keeps: for comparisons with bare qemu (bench), which need the
// same disks without turtles' login.
func WriteSeed(path, name string) error {
	_, _, authorized, err := newKey()
	if err != nil {
		return err
	}
	return writeSeed(path, seedFiles(name, authorized))
}
