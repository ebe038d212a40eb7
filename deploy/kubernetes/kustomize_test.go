package kubernetes_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"sigs.k8s.io/yaml"
)

// overlays are the kustomizations a user applies, each a whole turtles.
var overlays = []string{"single-node", "distributed"}

// kustomization is the part of kustomize's file these manifests use; a
// field this test does not know is an error (strict decoding), so that an
// overlay cannot use a kustomize feature render would ignore.
type kustomization struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Namespace  string   `json:"namespace"`
	Resources  []string `json:"resources"`
	Images     []struct {
		Name    string `json:"name"`
		NewName string `json:"newName,omitempty"`
		NewTag  string `json:"newTag,omitempty"`
	} `json:"images,omitempty"`
}

func readKustomization(t *testing.T, dir string) kustomization {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, kustomizationFile))
	if err != nil {
		t.Fatal(err)
	}
	var k kustomization
	if err := yaml.UnmarshalStrict(b, &k); err != nil {
		t.Fatalf("%s/%s: %v", dir, kustomizationFile, err)
	}
	if k.Kind != "Kustomization" || k.Namespace != namespace {
		t.Errorf("%s: kind %q namespace %q", dir, k.Kind, k.Namespace)
	}
	return k
}

// render is what `kubectl kustomize DIR` does with the features these
// kustomizations use: the documents of every resource, a directory
// resource rendered first, with the images rewritten. TestRenderIsKustomize
// compares it with the real kustomize where kubectl is installed.
func render(t *testing.T, dir string) []byte {
	t.Helper()
	k := readKustomization(t, dir)
	var out bytes.Buffer
	for _, r := range k.Resources {
		p := filepath.Join(dir, r)
		st, err := os.Stat(p)
		if err != nil {
			t.Fatalf("%s: resource %s: %v", dir, r, err)
		}
		var b []byte
		if st.IsDir() {
			b = render(t, p)
		} else if b, err = os.ReadFile(p); err != nil {
			t.Fatal(err)
		}
		out.WriteString("---\n")
		out.Write(b)
		out.WriteString("\n")
	}
	s := out.String()
	for _, img := range k.Images {
		name := img.Name
		if img.NewName != "" {
			name = img.NewName
		}
		for _, old := range []string{img.Name + ":latest", img.Name} {
			if img.NewTag != "" {
				s = strings.ReplaceAll(s, "image: "+old+"\n", "image: "+name+":"+img.NewTag+"\n")
			}
		}
	}
	return []byte(s)
}

// loadOverlay decodes an overlay and the secret template strictly.
func loadOverlay(t *testing.T, dir string) *manifests {
	t.Helper()
	m := newManifests()
	if err := m.add(dir, render(t, dir)); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(secretTemplate)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.add(secretTemplate, b); err != nil {
		t.Fatal(err)
	}
	return m
}

// TestRenderIsKustomize checks render against the real kustomize of
// kubectl: the same objects, field for field.
func TestRenderIsKustomize(t *testing.T) {
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Skip("kubectl is not installed: render cannot be compared with kustomize (TestKustomization checks what it can)")
	}
	for _, o := range overlays {
		t.Run(o, func(t *testing.T) {
			out, err := exec.Command(kubectl, "kustomize", o).CombinedOutput()
			if err != nil {
				t.Fatalf("kubectl kustomize %s: %v\n%s", o, err, out)
			}
			if diff := cmp.Diff(objects(t, render(t, o)), objects(t, out)); diff != "" {
				t.Errorf("render and kustomize differ (-render +kustomize):\n%s", diff)
			}
		})
	}
}

// objects are a YAML stream's documents as JSON, by kind and name.
func objects(t *testing.T, stream []byte) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, doc := range strings.Split(string(stream), "\n---") {
		j, err := yaml.YAMLToJSON([]byte(doc))
		if err != nil {
			t.Fatal(err)
		}
		var v map[string]any
		if err := json.Unmarshal(j, &v); err != nil || v == nil {
			continue
		}
		md, _ := v["metadata"].(map[string]any)
		key := fmt.Sprintf("%v/%v", v["kind"], md["name"])
		if _, dup := out[key]; dup {
			t.Errorf("%s twice", key)
		}
		canon, _ := json.MarshalIndent(v, "", " ")
		out[key] = string(canon)
	}
	return out
}

// TestKustomization checks that each overlay applies every manifest of
// its directory, never the secret template, and that its images are used.
func TestKustomization(t *testing.T) {
	for _, dir := range append([]string{"base"}, overlays...) {
		t.Run(dir, func(t *testing.T) {
			k := readKustomization(t, dir)
			files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
			if err != nil {
				t.Fatal(err)
			}
			for _, f := range files {
				if name := filepath.Base(f); name != kustomizationFile && !slices.Contains(k.Resources, name) {
					t.Errorf("%s does not list %s", dir, name)
				}
			}
			for _, r := range k.Resources {
				if strings.Contains(r, "secret.template") {
					t.Errorf("%s lists %s: applying it would overwrite real secrets with placeholders", dir, r)
				}
			}
			if dir == "base" {
				return
			}
			if !slices.Contains(k.Resources, "../base") {
				t.Errorf("%s is not an overlay of ../base", dir)
			}
			m := loadOverlay(t, dir)
			for _, img := range k.Images {
				used := false
				for _, d := range m.deployments {
					for _, c := range d.Spec.Template.Spec.Containers {
						used = used || strings.HasPrefix(c.Image, img.Name+":") || c.Image == img.Name
					}
				}
				if !used {
					t.Errorf("image %s is used by no container", img.Name)
				}
			}
		})
	}
	if _, err := os.Stat(kustomizationFile); err == nil {
		t.Errorf("%s at the top: apply an overlay (%v)", kustomizationFile, overlays)
	}
}
