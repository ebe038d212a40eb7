package store

import (
	"mime"
	"strings"
)

// inlineTypes are the content types a browser shows without running
// anything the object holds: plain text, JSON, raster images. Every other
// type is active (HTML, SVG, XML, PDF, JavaScript, anything unknown): a
// task wrote it, and opened on a site's origin it could run script there.
var inlineTypes = map[string]bool{
	"text/plain":       true,
	"application/json": true,
	"image/png":        true,
	"image/jpeg":       true,
	"image/gif":        true,
	"image/webp":       true,
}

// Inline reports whether an object of contentType is safe to show in a
// browser rather than download: see inlineTypes.
func Inline(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	return err == nil && inlineTypes[strings.ToLower(mt)]
}

// IsArtifact reports whether key is one of an attempt's artifacts, which
// the task chose, rather than a file turtles wrote (log, result.json, the
// log page). It errs towards yes: a context named "artifacts" makes its
// attempts' own files count too.
func IsArtifact(key string) bool {
	return strings.Contains("/"+key, "/"+ArtifactsName)
}
