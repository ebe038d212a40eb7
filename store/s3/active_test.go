package s3_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/turtles-ci/turtles/store/s3"
	"github.com/turtles-ci/turtles/store/s3/s3test"
)

// TestActiveArtifactsAreDownloads is the attack of a task that leaves an
// HTML or SVG artifact and sends people a presigned link to it (or to the
// bucket's website): S3 serves it as a download of bytes, while turtles'
// own log page stays a page and the store still reports the real type.
func TestActiveArtifactsAreDownloads(t *testing.T) {
	ctx := context.Background()
	bucket, err := versity.CreateBucket(ctx)
	if err != nil {
		t.Fatal(err)
	}
	st, err := s3.New(versity.Config(bucket, "ci"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := minio.New(strings.TrimPrefix(versity.Endpoint, "http://"), &minio.Options{
		Creds: credentials.NewStaticV4(s3test.AccessKey, s3test.SecretKey, ""), Region: s3test.Region, BucketLookup: minio.BucketLookupPath})
	if err != nil {
		t.Fatal(err)
	}
	const attempt = "o/r/sha/unit/1/"
	tests := []struct {
		key, contentType string
		download         bool
	}{
		{key: attempt + "artifacts/evil.svg", contentType: "image/svg+xml", download: true},
		{key: attempt + "artifacts/sub/evil.html", contentType: "text/html; charset=utf-8", download: true},
		{key: attempt + "artifacts/evil.xml", contentType: "text/xml; charset=utf-8", download: true},
		{key: attempt + "artifacts/out.txt", contentType: "text/plain; charset=utf-8"},
		{key: attempt + "artifacts/shot.png", contentType: "image/png"},
		{key: attempt + "index.html", contentType: "text/html; charset=utf-8"}, // turtles' log page
		{key: attempt + "log", contentType: "text/plain; charset=utf-8"},
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			if err := st.Put(ctx, tt.key, strings.NewReader("<svg><script>alert(1)</script></svg>"), tt.contentType); err != nil {
				t.Fatal(err)
			}
			if info, err := st.Stat(ctx, tt.key); err != nil || info.ContentType != tt.contentType {
				t.Errorf("Stat = %+v, %v; want the type put, %q", info, err, tt.contentType)
			}
			u, err := c.PresignedGetObject(ctx, bucket, "ci/"+tt.key, time.Minute, nil)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := http.Get(u.String())
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			ct, cd := resp.Header.Get("Content-Type"), resp.Header.Get("Content-Disposition")
			if resp.StatusCode != 200 {
				t.Fatalf("presigned GET: %s", resp.Status)
			}
			if tt.download {
				if ct != "application/octet-stream" || !strings.HasPrefix(cd, "attachment") {
					t.Errorf("presigned GET: Content-Type %q, Content-Disposition %q; want a download of bytes", ct, cd)
				}
			} else if ct != tt.contentType || cd != "" {
				t.Errorf("presigned GET: Content-Type %q, Content-Disposition %q; want %q inline", ct, cd, tt.contentType)
			}
		})
	}
}
