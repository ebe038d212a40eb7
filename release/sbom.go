package release

import (
	"crypto/sha256"
	"debug/buildinfo"
	"encoding/json"
	"fmt"
	"time"
)

// The SBOM is CycloneDX 1.5 JSON, written here from the binary's own build
// information (what `go version -m` prints) rather than with a generator
// module: it lists exactly the modules linked into the binary, at the
// versions and go.sum checksums the linker saw.

type cdxBOM struct {
	BOMFormat    string          `json:"bomFormat"`
	SpecVersion  string          `json:"specVersion"`
	SerialNumber string          `json:"serialNumber"`
	Version      int             `json:"version"`
	Metadata     cdxMetadata     `json:"metadata"`
	Components   []cdxComponent  `json:"components"`
	Dependencies []cdxDependency `json:"dependencies"`
}

type cdxMetadata struct {
	Timestamp string       `json:"timestamp"`
	Tools     cdxTools     `json:"tools"`
	Component cdxComponent `json:"component"`
}

type cdxTools struct {
	Components []cdxComponent `json:"components"`
}

type cdxComponent struct {
	Type       string        `json:"type"`
	BOMRef     string        `json:"bom-ref,omitempty"`
	Name       string        `json:"name"`
	Version    string        `json:"version,omitempty"`
	PURL       string        `json:"purl,omitempty"`
	Hashes     []cdxHash     `json:"hashes,omitempty"`
	Properties []cdxProperty `json:"properties,omitempty"`
}

type cdxHash struct {
	Alg     string `json:"alg"`
	Content string `json:"content"`
}

type cdxProperty struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

type cdxDependency struct {
	Ref       string   `json:"ref"`
	DependsOn []string `json:"dependsOn"`
}

// SBOM returns the CycloneDX SBOM of the Go binary at path: the binary
// (named version, with its SHA-256) and every module compiled into it,
// with its version, go.sum hash (property go:sum) and package URL. The
// same binary and time give the same bytes.
func SBOM(path, version string, t time.Time) ([]byte, error) {
	bi, err := buildinfo.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("sbom: %w", err)
	}
	sum, err := sha256File(path)
	if err != nil {
		return nil, err
	}
	mainRef := purl(bi.Main.Path, version)
	bom := cdxBOM{
		BOMFormat: "CycloneDX", SpecVersion: "1.5", Version: 1,
		Metadata: cdxMetadata{
			Timestamp: t.UTC().Format(time.RFC3339),
			Tools:     cdxTools{Components: []cdxComponent{{Type: "application", Name: "turtles release", Version: version}}},
			Component: cdxComponent{Type: "application", BOMRef: mainRef, Name: bi.Main.Path, Version: version, PURL: mainRef,
				Hashes:     []cdxHash{{Alg: "SHA-256", Content: sum}},
				Properties: append([]cdxProperty{{Name: "go:version", Value: bi.GoVersion}}, settings(bi)...)},
		},
		Components:   []cdxComponent{},
		Dependencies: []cdxDependency{{Ref: mainRef, DependsOn: []string{}}},
	}
	for _, m := range bi.Deps {
		if m.Replace != nil {
			m = m.Replace
		}
		ref := purl(m.Path, m.Version)
		c := cdxComponent{Type: "library", BOMRef: ref, Name: m.Path, Version: m.Version, PURL: ref}
		if m.Sum != "" {
			c.Properties = []cdxProperty{{Name: "go:sum", Value: m.Sum}}
		}
		bom.Components = append(bom.Components, c)
		bom.Dependencies[0].DependsOn = append(bom.Dependencies[0].DependsOn, ref)
	}
	// A serial number that names this content: the same BOM gets the same
	// one, a different BOM another.
	body, err := json.Marshal(bom)
	if err != nil {
		return nil, err
	}
	h := sha256.Sum256(body)
	h[6] = h[6]&0x0f | 0x50 // version 5 layout (name-based, SHA)
	h[8] = h[8]&0x3f | 0x80
	bom.SerialNumber = fmt.Sprintf("urn:uuid:%x-%x-%x-%x-%x", h[0:4], h[4:6], h[6:8], h[8:10], h[10:16])
	out, err := json.MarshalIndent(bom, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(out, '\n'), nil
}

// settings are the build settings that make the binary what it is
// (-trimpath, -ldflags, GOARCH, CGO_ENABLED, ...), as properties.
func settings(bi *buildinfo.BuildInfo) []cdxProperty {
	var out []cdxProperty
	for _, s := range bi.Settings {
		out = append(out, cdxProperty{Name: "go:build:" + s.Key, Value: s.Value})
	}
	return out
}

// purl is the package URL of a Go module version.
func purl(path, version string) string {
	if version == "" || version == "(devel)" {
		return "pkg:golang/" + path
	}
	return "pkg:golang/" + path + "@" + version
}
