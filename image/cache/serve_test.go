package cache

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

func TestServe(t *testing.T) {
	seed, id := testImage(t, "img", 1<<20)
	srv := httptest.NewServer(http.StripPrefix("/images", seed.Handler()))
	t.Cleanup(srv.Close)
	_, files, _ := seed.lookup(id)
	disk := files[0].Name
	// A download in progress must stay invisible.
	if err := os.WriteFile(filepath.Join(seed.tmpDir(), "partial.qcow2.part"), []byte("half"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(seed.tmpDir(), "other.qcow2"), []byte("half"), 0o644); err != nil {
		t.Fatal(err)
	}
	do := func(method, path string, hdr ...string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(method, srv.URL+path, nil)
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	full := do("GET", "/images/"+disk)
	etag := full.Header.Get("ETag")
	for _, tc := range []struct {
		name          string
		method, path  string
		hdr           []string
		code          int
		contentLength int64
	}{
		{name: "get", method: "GET", path: "/images/" + disk, code: 200, contentLength: 1 << 20},
		{name: "head", method: "HEAD", path: "/images/" + disk, code: 200, contentLength: 1 << 20},
		{name: "manifest", method: "GET", path: "/images/" + id.ManifestFile(), code: 200, contentLength: -2},
		{name: "range", method: "GET", path: "/images/" + disk, hdr: []string{"Range", "bytes=1000-"}, code: 206, contentLength: 1<<20 - 1000},
		{name: "if-none-match", method: "GET", path: "/images/" + disk, hdr: []string{"If-None-Match", etag}, code: 304, contentLength: -2},
		{name: "if-range stale", method: "GET", path: "/images/" + disk, hdr: []string{"Range", "bytes=1000-", "If-Range", `"other"`}, code: 200, contentLength: 1 << 20},
		{name: "put", method: "PUT", path: "/images/" + disk, code: 405, contentLength: -2},
		{name: "delete", method: "DELETE", path: "/images/" + disk, code: 405, contentLength: -2},
		{name: "missing", method: "GET", path: "/images/nope.qcow2", code: 404, contentLength: -2},
		{name: "partial", method: "GET", path: "/images/.tmp/partial.qcow2.part", code: 404, contentLength: -2},
		{name: "hidden dir", method: "GET", path: "/images/.tmp", code: 404, contentLength: -2},
		{name: "escape", method: "GET", path: "/images/..%2f" + disk, code: 404, contentLength: -2},
		{name: "lock", method: "GET", path: "/images/.locks", code: 404, contentLength: -2},
		{name: "dir", method: "GET", path: "/images/", code: 404, contentLength: -2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := do(tc.method, tc.path, tc.hdr...)
			if resp.StatusCode != tc.code {
				t.Errorf("status %d, want %d", resp.StatusCode, tc.code)
			}
			if tc.contentLength != -2 && resp.ContentLength != tc.contentLength {
				t.Errorf("Content-Length %d, want %d", resp.ContentLength, tc.contentLength)
			}
			if tc.code/100 == 2 && resp.Header.Get("ETag") != etag && tc.name != "manifest" {
				t.Errorf("ETag %q, want %q", resp.Header.Get("ETag"), etag)
			}
		})
	}
	if etag == "" || full.Header.Get("Accept-Ranges") != "bytes" {
		t.Errorf("ETag %q, Accept-Ranges %q", etag, full.Header.Get("Accept-Ranges"))
	}
	if got := full.Header.Get("Content-Length"); got != strconv.Itoa(1<<20) {
		t.Errorf("Content-Length %s", got)
	}
}
