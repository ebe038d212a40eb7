package store

import "testing"

func TestInline(t *testing.T) {
	tests := []struct {
		contentType string
		want        bool
	}{
		{"text/plain; charset=utf-8", true},
		{"application/json", true},
		{"image/png", true},
		{"IMAGE/JPEG", true},
		{"image/svg+xml", false},
		{"text/html; charset=utf-8", false},
		{"application/xhtml+xml", false},
		{"text/xml", false},
		{"application/xml", false},
		{"application/pdf", false},
		{"text/javascript", false},
		{"application/octet-stream", false},
		{"", false},
		{"text/plain; charset=utf-8; x=\"", false}, // unparsable
	}
	for _, tt := range tests {
		if got := Inline(tt.contentType); got != tt.want {
			t.Errorf("Inline(%q) = %v, want %v", tt.contentType, got, tt.want)
		}
	}
}

func TestIsArtifact(t *testing.T) {
	for key, want := range map[string]bool{
		"o/r/sha/ctx/1/artifacts/x.svg":     true,
		"o/r/sha/ctx/1/artifacts/a/b.html":  true,
		"o/r/sha/ctx/1/index.html":          false,
		"o/r/sha/ctx/1/log":                 false,
		"o/r/sha/artifacts/1/index.html":    true, // errs towards yes
		"o/r/sha/ctx/1/my-artifacts/x.html": false,
	} {
		if got := IsArtifact(key); got != want {
			t.Errorf("IsArtifact(%q) = %v, want %v", key, got, want)
		}
	}
}
