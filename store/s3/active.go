package s3

import (
	"mime"
	"path"

	"github.com/minio/minio-go/v7"

	"github.com/turtles-ci/turtles/store"
)

// typeMeta is the user metadata (x-amz-meta-turtles-content-type) that
// keeps the real content type of an artifact stored as a download.
const typeMeta = "Turtles-Content-Type"

// putOptions are the headers key is stored with. An artifact of an active
// type (anything store.Inline refuses: HTML, SVG, XML, PDF...) is stored as
// application/octet-stream with Content-Disposition: attachment, its real
// type kept in typeMeta: S3 sends those headers back on every GET (website
// hosting, a presigned link) and can send no CSP, so a bucket origin never
// renders what a task wrote. turtles' own files (the log page) keep their
// type.
func putOptions(key, contentType string) minio.PutObjectOptions {
	if contentType == "" {
		contentType = "application/octet-stream"
	}
	opts := minio.PutObjectOptions{ContentType: contentType}
	if store.IsArtifact(key) && !store.Inline(contentType) {
		opts.ContentType = "application/octet-stream"
		opts.ContentDisposition = mime.FormatMediaType("attachment", map[string]string{"filename": path.Base(key)})
		if opts.ContentDisposition == "" {
			opts.ContentDisposition = "attachment"
		}
		opts.UserMetadata = map[string]string{typeMeta: contentType}
	}
	return opts
}

// contentType is the type an object was put with.
func contentType(oi minio.ObjectInfo) string {
	if ct := oi.UserMetadata[typeMeta]; ct != "" {
		return ct
	}
	if oi.ContentType == "" {
		return "application/octet-stream"
	}
	return oi.ContentType
}
