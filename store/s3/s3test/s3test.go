// Package s3test runs S3 servers for tests and benchmarks of store/s3: an
// in-process gofakes3 (fast, for unit tests) and a real versitygw process
// on loopback (installed with `go install` into a cache directory the
// first time). Only tests and bench/ import it.
package s3test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/turtles-ci/turtles/store/s3"
)

// Test credentials: the servers here accept nothing else.
const (
	AccessKey = "turtles-test"
	SecretKey = "turtles-test-secret-key"
	Region    = "us-east-1"
)

// VersityVersion is the versitygw the harness installs.
const VersityVersion = "v1.8.0"

// Server is a running S3 endpoint.
type Server struct {
	Endpoint string // http://127.0.0.1:PORT
	stop     func()
}

// Close stops the server.
func (s *Server) Close() { s.stop() }

// Config returns a store config for bucket and prefix on this server.
func (s *Server) Config(bucket, prefix string) s3.Config {
	return s3.Config{Endpoint: s.Endpoint, Bucket: bucket, Prefix: prefix, Region: Region,
		AccessKey: AccessKey, SecretKey: SecretKey, PathStyle: true}
}

// CreateBucket makes a bucket with a fresh random name and returns it.
func (s *Server) CreateBucket(ctx context.Context) (string, error) {
	var b [6]byte
	rand.Read(b[:])
	name := "turtles-" + hex.EncodeToString(b[:])
	c, err := minio.New(strings.TrimPrefix(s.Endpoint, "http://"), &minio.Options{
		Creds: credentials.NewStaticV4(AccessKey, SecretKey, ""), Region: Region, BucketLookup: minio.BucketLookupPath})
	if err != nil {
		return "", err
	}
	if err := c.MakeBucket(ctx, name, minio.MakeBucketOptions{Region: Region}); err != nil {
		return "", fmt.Errorf("create bucket %s: %w", name, err)
	}
	return name, nil
}

// Fake starts gofakes3 in process, on loopback.
func Fake() *Server {
	faker := gofakes3.New(s3mem.New())
	h := faker.Server()
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// minio-go sends an empty object chunked, without Content-Length,
		// which real servers accept and gofakes3 refuses.
		if r.Method == http.MethodPut && r.Header.Get("Content-Length") == "" && r.Header.Get("X-Amz-Decoded-Content-Length") == "0" {
			r.Header.Set("Content-Length", "0")
		}
		h.ServeHTTP(w, r)
	}))
	return &Server{Endpoint: ts.URL, stop: ts.Close}
}

// Versity binary: installed once per machine into the cache directory.
var installMu sync.Mutex

// InstallVersity returns the path of versitygw VersityVersion, installing
// it with `go install` into DIR/turtles/bin (DIR is the user cache
// directory) when it is missing. The first install compiles for minutes.
func InstallVersity(ctx context.Context) (string, error) {
	installMu.Lock()
	defer installMu.Unlock()
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("install versitygw: %w", err)
	}
	bin := filepath.Join(cache, "turtles", "versitygw-"+VersityVersion)
	path := filepath.Join(bin, "versitygw")
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	if err := os.MkdirAll(bin, 0o755); err != nil {
		return "", fmt.Errorf("install versitygw: %w", err)
	}
	cmd := exec.CommandContext(ctx, "go", "install", "github.com/versity/versitygw/cmd/versitygw@"+VersityVersion)
	// Outside any module, so the project's go.mod plays no part.
	cmd.Dir = os.TempDir()
	cmd.Env = append(os.Environ(), "GOBIN="+bin, "GOFLAGS=", "GOWORK=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go install versitygw@%s: %w\n%s", VersityVersion, err, out)
	}
	return path, nil
}

// Versity starts versitygw with its posix backend on dir (which must
// exist), listening on a free loopback port, and waits until it answers.
func Versity(ctx context.Context, dir string) (*Server, error) {
	path, err := InstallVersity(ctx)
	if err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	cmd := exec.Command(path, "--port", addr, "posix", dir)
	// Credentials by environment, not on a command line others can read.
	cmd.Env = append(os.Environ(), "ROOT_ACCESS_KEY="+AccessKey, "ROOT_SECRET_KEY="+SecretKey, "VGW_REGION="+Region)
	logf, err := os.CreateTemp("", "versitygw-*.log")
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start versitygw: %w", err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	stop := func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
		logf.Close()
		os.Remove(logf.Name())
	}
	endpoint := "http://" + addr
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(endpoint + "/")
		if err == nil {
			resp.Body.Close()
			return &Server{Endpoint: endpoint, stop: stop}, nil
		}
		select {
		case <-exited:
			out, _ := os.ReadFile(logf.Name())
			stop()
			return nil, fmt.Errorf("versitygw exited: %s", out)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			out, _ := os.ReadFile(logf.Name())
			stop()
			return nil, errors.New("versitygw did not answer in 30s: " + string(out))
		}
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
