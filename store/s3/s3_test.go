package s3_test

import (
	"context"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/turtles-ci/turtles/store"
	"github.com/turtles-ci/turtles/store/s3"
	"github.com/turtles-ci/turtles/store/s3/s3test"
	"github.com/turtles-ci/turtles/store/storetest"
)

// versity is started once for the test binary, by TestMain.
var versity *s3test.Server

func TestMain(m *testing.M) {
	code := func() int {
		dir, err := os.MkdirTemp("", "versitygw-")
		if err != nil {
			panic(err)
		}
		defer os.RemoveAll(dir)
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
		defer cancel()
		versity, err = s3test.Versity(ctx, dir)
		if err != nil {
			os.Stderr.WriteString("versitygw: " + err.Error() + "\n")
			return 1
		}
		defer versity.Close()
		return m.Run()
	}()
	os.Exit(code)
}

// noCompose hides store.Composer: gofakes3 has no UploadPartCopy (the
// bot then puts the whole log; see bot's livelog tests).
type noCompose struct{ store.Store }

func run(t *testing.T, srv *s3test.Server, compose bool) {
	ctx := context.Background()
	bucket, err := srv.CreateBucket(ctx)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	storetest.Run(t, func(t *testing.T) store.Store {
		// A fresh prefix per subtest: an empty store without a bucket each.
		n++
		st, err := s3.New(srv.Config(bucket, "run"+string(rune('a'+n))+"/x"))
		if err != nil {
			t.Fatal(err)
		}
		if err := st.Check(ctx); err != nil {
			t.Fatal(err)
		}
		if !compose {
			return noCompose{st}
		}
		return st
	})
}

func TestContractFake(t *testing.T) {
	srv := s3test.Fake()
	defer srv.Close()
	run(t, srv, false)
}

func TestContractVersity(t *testing.T) { run(t, versity, true) }

func TestConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  s3.Config
		ok   bool
	}{
		{name: "minimal", cfg: s3.Config{Bucket: "b"}, ok: true},
		{name: "url", cfg: s3.Config{Bucket: "b", Endpoint: "http://127.0.0.1:9000"}, ok: true},
		{name: "host", cfg: s3.Config{Bucket: "b", Endpoint: "minio.example:9000", Prefix: "ci/"}, ok: true},
		{name: "no bucket", cfg: s3.Config{}},
		{name: "bad scheme", cfg: s3.Config{Bucket: "b", Endpoint: "ftp://x"}},
		{name: "path in endpoint", cfg: s3.Config{Bucket: "b", Endpoint: "http://x/y"}},
		{name: "bad prefix", cfg: s3.Config{Bucket: "b", Prefix: "../x"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s3.New(tt.cfg)
			if (err == nil) != tt.ok {
				t.Errorf("New(%+v) error = %v, want ok %v", tt.cfg, err, tt.ok)
			}
		})
	}
}

func TestMissingBucket(t *testing.T) {
	srv := s3test.Fake()
	defer srv.Close()
	st, err := s3.New(srv.Config("no-such-bucket", ""))
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Check(context.Background()); err == nil {
		t.Error("Check of a missing bucket succeeded")
	}
	if err := st.Put(context.Background(), "x", strings.NewReader("x"), "text/plain"); err == nil {
		t.Error("Put into a missing bucket succeeded")
	}
}

func TestCredentialsNotInErrors(t *testing.T) {
	srv := s3test.Fake()
	defer srv.Close()
	cfg := srv.Config("b", "")
	cfg.SecretKey = "very-secret-value"
	st, _ := s3.New(cfg)
	err := st.Check(context.Background())
	if err != nil && strings.Contains(err.Error(), "very-secret-value") {
		t.Errorf("error shows the secret key: %v", err)
	}
	if strings.Contains(st.String(), cfg.SecretKey) || strings.Contains(st.String(), cfg.AccessKey) {
		t.Errorf("String() shows credentials: %s", st)
	}
}

// TestUnknownLength puts from a reader that cannot say its size, streamed
// in aws-chunked encoding: the object must hold the data, not the framing.
// gofakes3 stores the framing, so this runs on versitygw only.
func TestUnknownLength(t *testing.T) {
	ctx := context.Background()
	bucket, err := versity.CreateBucket(ctx)
	if err != nil {
		t.Fatal(err)
	}
	st, err := s3.New(versity.Config(bucket, ""))
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Put(ctx, "k", io.MultiReader(strings.NewReader("first\n"), strings.NewReader("second\n")), "text/plain"); err != nil {
		t.Fatal(err)
	}
	rc, _, err := st.Get(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if b, _ := io.ReadAll(rc); string(b) != "first\nsecond\n" {
		t.Errorf("Get = %q, want the data put", b)
	}
}
