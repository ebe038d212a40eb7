// Package s3 is the store.Store backend on an S3-compatible object store
// (AWS S3, MinIO, versitygw, Ceph RGW...), through minio-go. Only
// cmd/turtles constructs it; everything else sees a store.Store.
//
// Objects are stored under Config.Prefix in Config.Bucket, with their
// content type as the S3 Content-Type. S3 cannot append, so live logs use
// the chunk scheme of the bot (see bot/livelog.go); Compose (a multipart
// upload whose parts are copied from the chunks by the server) turns the
// chunks into the final log without uploading it again.
package s3

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/turtles-ci/turtles/store"
)

// partSize is the multipart part size for uploads of unknown length: it
// bounds the memory one Put buffers, and objects up to it are uploaded in
// a single request.
const partSize = 16 << 20

// statConcurrency bounds the HEAD requests List makes to learn content
// types, which S3 listings do not carry.
const statConcurrency = 8

// Config says where the objects live. Credentials are never logged.
type Config struct {
	// Endpoint is host[:port] or a URL (http:// means no TLS). Empty
	// means AWS S3 (s3.amazonaws.com).
	Endpoint string
	Bucket   string
	// Prefix is prepended to every key ("ci/" keeps turtles in a folder
	// of a shared bucket); a missing trailing slash is added.
	Prefix    string
	Region    string
	AccessKey string
	SecretKey string
	// PathStyle addresses the bucket as ENDPOINT/BUCKET rather than
	// BUCKET.ENDPOINT; most self-hosted servers need it.
	PathStyle bool
	// Transport is for tests; nil means http.DefaultTransport's settings.
	Transport http.RoundTripper
	Log       *slog.Logger
}

// Store is a store.Store on one bucket and prefix.
type Store struct {
	c      *minio.Client
	bucket string
	prefix string
	log    *slog.Logger
}

var (
	_ store.Store    = (*Store)(nil)
	_ store.Composer = (*Store)(nil)
)

// composeConcurrency bounds the parts Compose copies or uploads at once.
const composeConcurrency = 4

// New validates cfg and returns a Store. It does not contact the server;
// Check does.
func New(cfg Config) (*Store, error) {
	if cfg.Bucket == "" {
		return nil, errors.New("s3 store: no bucket")
	}
	endpoint, secure := cfg.Endpoint, true
	if endpoint == "" {
		endpoint = "s3.amazonaws.com"
	}
	if strings.Contains(endpoint, "://") {
		u, err := url.Parse(endpoint)
		if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") || (u.Path != "" && u.Path != "/") {
			return nil, fmt.Errorf("s3 store: bad endpoint %q: want host:port or http(s)://host:port", cfg.Endpoint)
		}
		endpoint, secure = u.Host, u.Scheme == "https"
	}
	lookup := minio.BucketLookupDNS
	if cfg.PathStyle {
		lookup = minio.BucketLookupPath
	}
	c, err := minio.New(endpoint, &minio.Options{
		Creds:        credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, ""),
		Secure:       secure,
		Region:       cfg.Region,
		BucketLookup: lookup,
		Transport:    cfg.Transport,
	})
	if err != nil {
		return nil, fmt.Errorf("s3 store: %w", err)
	}
	prefix := cfg.Prefix
	if prefix != "" && !strings.HasSuffix(prefix, "/") {
		prefix += "/"
	}
	if prefix != "" {
		if err := store.CheckKey(strings.TrimSuffix(prefix, "/")); err != nil {
			return nil, fmt.Errorf("s3 store: bad prefix %q", cfg.Prefix)
		}
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Store{c: c, bucket: cfg.Bucket, prefix: prefix, log: log}, nil
}

// Check reports whether the bucket exists and the credentials can see it.
func (s *Store) Check(ctx context.Context) error {
	ok, err := s.c.BucketExists(ctx, s.bucket)
	if err != nil {
		return fmt.Errorf("s3 bucket %s: %w", s.bucket, err)
	}
	if !ok {
		return fmt.Errorf("s3 bucket %s does not exist", s.bucket)
	}
	return nil
}

// String names the location, without credentials, for logs.
func (s *Store) String() string {
	return fmt.Sprintf("s3://%s/%s (%s)", s.bucket, s.prefix, s.c.EndpointURL().Host)
}

func (s *Store) name(key string) (string, error) {
	if err := store.CheckKey(key); err != nil {
		return "", err
	}
	return s.prefix + key, nil
}

// notExist maps S3's "no such key" (and a 404 without a body, as HEAD
// gives) to store.ErrNotExist.
func notExist(key string, err error) error {
	r := minio.ToErrorResponse(err)
	if r.Code == "NoSuchKey" || r.StatusCode == http.StatusNotFound && r.Code != "NoSuchBucket" {
		return fmt.Errorf("%s: %w", key, store.ErrNotExist)
	}
	return fmt.Errorf("%s: %w", key, err)
}

// Put implements store.Store. S3 makes an object visible only when its
// upload (single or multipart) completes, so readers never see part of
// one; a failed reader aborts the upload and leaves the old object.
func (s *Store) Put(ctx context.Context, key string, r io.Reader, contentType string) error {
	name, err := s.name(key)
	if err != nil {
		return err
	}
	// A known size is one plain request; an unknown one is streamed in
	// aws-chunked encoding, which not every server decodes.
	size := int64(-1)
	switch l := r.(type) {
	case interface{ Len() int }:
		size = int64(l.Len())
	case interface{ Size() int64 }: // io.SectionReader: live log chunks
		size = l.Size()
	}
	opts := putOptions(key, contentType)
	opts.PartSize = partSize
	_, err = s.c.PutObject(ctx, s.bucket, name, r, size, opts)
	if err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	return nil
}

// PutNew implements store.Store with a conditional PUT (If-None-Match:
// "*"), which S3 (since 2024), MinIO and versitygw (v1.8.0 checks it under
// a per-key lock) evaluate atomically. The body is sent in one request,
// since not every server checks the condition on a multipart upload; so
// it is bounded by partSize, plenty for the markers it is for.
func (s *Store) PutNew(ctx context.Context, key string, r io.Reader, contentType string) error {
	name, err := s.name(key)
	if err != nil {
		return err
	}
	if contentType == "" {
		contentType = "application/octet-stream"
	}
	b, err := io.ReadAll(io.LimitReader(r, partSize+1))
	if err != nil {
		return fmt.Errorf("put new %s: %w", key, err)
	}
	if len(b) > partSize {
		return fmt.Errorf("put new %s: larger than %d bytes", key, partSize)
	}
	opts := minio.PutObjectOptions{ContentType: contentType}
	opts.SetMatchETagExcept("*")
	_, err = s.c.PutObject(ctx, s.bucket, name, bytes.NewReader(b), int64(len(b)), opts)
	if err != nil {
		// 412: the key exists. 409: a concurrent conditional write of the
		// key is in flight (AWS); either way it is not ours.
		if r := minio.ToErrorResponse(err); r.StatusCode == http.StatusPreconditionFailed || r.StatusCode == http.StatusConflict {
			return fmt.Errorf("put new %s: %w", key, store.ErrExist)
		}
		return fmt.Errorf("put new %s: %w", key, err)
	}
	return nil
}

// Get implements store.Store.
func (s *Store) Get(ctx context.Context, key string) (io.ReadCloser, store.Info, error) {
	name, err := s.name(key)
	if err != nil {
		return nil, store.Info{}, err
	}
	obj, err := s.c.GetObject(ctx, s.bucket, name, minio.GetObjectOptions{})
	if err != nil {
		return nil, store.Info{}, notExist(key, err)
	}
	oi, err := obj.Stat() // sends the GET, so that a missing key fails here
	if err != nil {
		obj.Close()
		return nil, store.Info{}, notExist(key, err)
	}
	return obj, s.info(key, oi), nil
}

// Stat implements store.Store.
func (s *Store) Stat(ctx context.Context, key string) (store.Info, error) {
	name, err := s.name(key)
	if err != nil {
		return store.Info{}, err
	}
	oi, err := s.c.StatObject(ctx, s.bucket, name, minio.StatObjectOptions{})
	if err != nil {
		return store.Info{}, notExist(key, err)
	}
	return s.info(key, oi), nil
}

func (s *Store) info(key string, oi minio.ObjectInfo) store.Info {
	return store.Info{Key: key, Size: oi.Size, ContentType: contentType(oi), Modified: oi.LastModified}
}

// List implements store.Store. Listings carry no content types, so List
// asks for each object's (a few at a time): use it on one attempt's
// prefix, not on a whole bucket, where a cost per object matters.
func (s *Store) List(ctx context.Context, prefix string) ([]store.Info, error) {
	var out []store.Info
	for oi := range s.c.ListObjects(ctx, s.bucket, minio.ListObjectsOptions{Prefix: s.prefix + prefix, Recursive: true}) {
		if oi.Err != nil {
			return nil, fmt.Errorf("list %q: %w", prefix, oi.Err)
		}
		key := strings.TrimPrefix(oi.Key, s.prefix)
		if store.CheckKey(key) != nil {
			continue // not ours: made by something else in the bucket
		}
		out = append(out, store.Info{Key: key, Size: oi.Size, Modified: oi.LastModified})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	if err := s.fillTypes(ctx, out); err != nil {
		return nil, fmt.Errorf("list %q: %w", prefix, err)
	}
	return out, nil
}

func (s *Store) fillTypes(ctx context.Context, infos []store.Info) error {
	sem := make(chan struct{}, statConcurrency)
	var wg sync.WaitGroup
	errs := make([]error, len(infos))
	for i := range infos {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			oi, err := s.c.StatObject(ctx, s.bucket, s.prefix+infos[i].Key, minio.StatObjectOptions{})
			if err != nil {
				if errors.Is(notExist(infos[i].Key, err), store.ErrNotExist) {
					infos[i].ContentType = "application/octet-stream" // deleted since listed
					return
				}
				errs[i] = err
				return
			}
			infos[i].ContentType = s.info(infos[i].Key, oi).ContentType
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Delete implements store.Store. S3 deletes of missing keys succeed.
func (s *Store) Delete(ctx context.Context, key string) error {
	name, err := s.name(key)
	if err != nil {
		return err
	}
	if err := s.c.RemoveObject(ctx, s.bucket, name, minio.RemoveObjectOptions{}); err != nil {
		if errors.Is(notExist(key, err), store.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("delete %s: %w", key, err)
	}
	return nil
}

// Compose implements store.Composer with a multipart upload: UploadPartCopy
// for ranges of stored objects (the server copies them), UploadPart for
// data. A failure aborts the upload, so the old object stays.
func (s *Store) Compose(ctx context.Context, key string, parts []store.Part, contentType string) error {
	name, err := s.name(key)
	if err != nil {
		return err
	}
	if len(parts) == 0 || len(parts) > 10000 {
		return fmt.Errorf("compose %s: %d parts, want 1 to 10000", key, len(parts))
	}
	srcs := make([]string, len(parts))
	for i, p := range parts {
		if i < len(parts)-1 && p.Size < store.MinPartSize {
			return fmt.Errorf("compose %s: part %d has %d bytes, under the minimum of %d", key, i+1, p.Size, store.MinPartSize)
		}
		if p.Key != "" {
			if srcs[i], err = s.name(p.Key); err != nil {
				return fmt.Errorf("compose %s: %w", key, err)
			}
		}
	}
	if contentType == "" {
		contentType = "application/octet-stream"
	}
	core := minio.Core{Client: s.c}
	id, err := core.NewMultipartUpload(ctx, s.bucket, name, minio.PutObjectOptions{ContentType: contentType})
	if err != nil {
		return fmt.Errorf("compose %s: %w", key, err)
	}
	completed := false
	defer func() {
		if completed {
			return
		}
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if err := core.AbortMultipartUpload(actx, s.bucket, name, id); err != nil {
			s.log.Warn("abort multipart upload", "key", key, "err", err)
		}
	}()
	done := make([]minio.CompletePart, len(parts))
	errs := make([]error, len(parts))
	sem := make(chan struct{}, composeConcurrency)
	var wg sync.WaitGroup
	for i, p := range parts {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			n := i + 1
			if p.Key != "" {
				cp, err := core.CopyObjectPart(ctx, s.bucket, srcs[i], s.bucket, name, id, n, p.Offset, p.Size, nil)
				done[i], errs[i] = minio.CompletePart{PartNumber: n, ETag: cp.ETag}, err
				return
			}
			op, err := core.PutObjectPart(ctx, s.bucket, name, id, n, p.Data, p.Size, minio.PutObjectPartOptions{})
			done[i], errs[i] = minio.CompletePart{PartNumber: n, ETag: op.ETag}, err
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("compose %s: %w", key, err)
	}
	if _, err := core.CompleteMultipartUpload(ctx, s.bucket, name, id, done, minio.PutObjectOptions{ContentType: contentType}); err != nil {
		return fmt.Errorf("compose %s: %w", key, err)
	}
	completed = true
	return nil
}
