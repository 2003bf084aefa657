package recstorage_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/chorus-rtc/chorus/shared/recstorage"
	"github.com/chorus-rtc/chorus/shared/s3test"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"))
}

// rendered writes what a recorder renders for recording id into
// <path>/<id>/: an MP4 of 100 000 bytes and its thumbnail.
func rendered(t *testing.T, path, id string) (dir string, mp4 []byte) {
	t.Helper()
	dir = filepath.Join(path, id)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	mp4 = bytes.Repeat([]byte("0123456789"), 10_000)
	if err := os.WriteFile(filepath.Join(dir, "talk.mp4"), mp4, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, id+".jpg"), []byte("jpeg"), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir, mp4
}

// get asks st for a file as the masters' handler does.
func get(t *testing.T, st recstorage.Storage, method, id, file string, header http.Header) (*http.Response, error) {
	t.Helper()
	req := httptest.NewRequest(method, "/openvidu/recordings/"+id+"/"+file, nil)
	for k, v := range header {
		req.Header[k] = v
	}
	rec := httptest.NewRecorder()
	if err := st.Serve(rec, req, id, file); err != nil {
		return nil, err
	}
	return rec.Result(), nil
}

// TestStorages: both storages serve what was published, whole, by range
// and by HEAD, and forget it on Delete; S3 keeps the objects under the
// bucket's folder and removes the local copy once uploaded.
func TestStorages(t *testing.T) {
	ctx := context.Background()
	srv := s3test.Start(t, "recordings")
	tests := []struct {
		name       string
		storage    func(t *testing.T, path string) recstorage.Storage
		localAfter bool   // the rendered files stay in the recording path
		objectDir  string // the MP4's key's folder in the S3 bucket
	}{
		{name: "local", localAfter: true, storage: func(_ *testing.T, path string) recstorage.Storage {
			return recstorage.Local{Path: path}
		}},
		{name: "s3 with a folder", objectDir: "tenant/a/ses_A~1", storage: func(t *testing.T, _ string) recstorage.Storage {
			st, err := recstorage.NewS3(ctx, recstorage.S3Config{Bucket: "recordings/tenant/a/", Endpoint: srv.Endpoint, PathStyle: true,
				AccessKey: "key", SecretKey: "secret", Headers: map[string]string{"x-amz-meta-origin": "chorus"}})
			if err != nil {
				t.Fatal(err)
			}
			return st
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := t.TempDir()
			const id = "ses_A~1"
			dir, mp4 := rendered(t, path, id)
			st := tt.storage(t, path)
			if err := st.Publish(ctx, id, dir); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(dir); (err == nil) != tt.localAfter {
				t.Errorf("local files after Publish: %v, want kept %v", err, tt.localAfter)
			}
			if tt.objectDir != "" {
				if _, err := os.Stat(srv.ObjectFile(tt.objectDir + "/talk.mp4")); err != nil {
					t.Errorf("the S3 server has no object talk.mp4 under %s: %v", tt.objectDir, err)
				}
			}

			resp, err := get(t, st, http.MethodGet, id, "talk.mp4", nil)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != 200 || !bytes.Equal(body, mp4) || resp.Header.Get("Content-Type") != "video/mp4" {
				t.Errorf("GET: %d, %d bytes, %q", resp.StatusCode, len(body), resp.Header.Get("Content-Type"))
			}
			resp, err = get(t, st, http.MethodGet, id, "talk.mp4", http.Header{"Range": {"bytes=10-19"}})
			if err != nil {
				t.Fatal(err)
			}
			body, _ = io.ReadAll(resp.Body)
			if resp.StatusCode != 206 || string(body) != "0123456789" || resp.Header.Get("Content-Range") != "bytes 10-19/100000" {
				t.Errorf("GET range: %d %q %q", resp.StatusCode, body, resp.Header.Get("Content-Range"))
			}
			resp, err = get(t, st, http.MethodHead, id, "talk.mp4", nil)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != 200 || resp.Header.Get("Content-Length") != "100000" {
				t.Errorf("HEAD: %d, length %q", resp.StatusCode, resp.Header.Get("Content-Length"))
			}
			if _, err := get(t, st, http.MethodGet, id, "other.mp4", nil); !errors.Is(err, recstorage.ErrNotFound) {
				t.Errorf("GET of a file never stored: %v, want ErrNotFound", err)
			}

			if err := st.Delete(ctx, id); err != nil {
				t.Fatal(err)
			}
			for _, f := range []string{"talk.mp4", id + ".jpg"} {
				if _, err := get(t, st, http.MethodGet, id, f, nil); !errors.Is(err, recstorage.ErrNotFound) {
					t.Errorf("GET %s after Delete: %v, want ErrNotFound", f, err)
				}
			}
			if err := st.Delete(ctx, id); err != nil {
				t.Errorf("Delete of a deleted recording: %v", err)
			}
		})
	}
}

// TestS3HeadersGoWithUploads: OPENVIDU_PRO_AWS_S3_HEADERS reach the
// server with each upload (a metadata header the server keeps and returns).
func TestS3HeadersGoWithUploads(t *testing.T) {
	ctx := context.Background()
	srv := s3test.Start(t, "recordings")
	st, err := recstorage.NewS3(ctx, recstorage.S3Config{Bucket: "recordings", Endpoint: srv.Endpoint, PathStyle: true,
		AccessKey: "key", SecretKey: "secret", Headers: map[string]string{"x-amz-meta-origin": "chorus"}})
	if err != nil {
		t.Fatal(err)
	}
	dir, _ := rendered(t, t.TempDir(), "ses_H")
	if err := st.Publish(ctx, "ses_H", dir); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Head(srv.Endpoint + "/recordings/ses_H/talk.mp4")
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if got := resp.Header.Get("x-amz-meta-origin"); got != "chorus" {
		t.Errorf("object metadata origin %q, want chorus (headers: %v)", got, resp.Header)
	}
}

// TestS3UploadRetries: an upload retries until the service answers (it
// comes up 1.5 s late), and against a service that never does gives up at
// the deadline, keeping the local files.
func TestS3UploadRetries(t *testing.T) {
	ctx := context.Background()
	t.Run("service late", func(t *testing.T) {
		srv := s3test.Reserve(t, "recordings")
		st, err := recstorage.NewS3(ctx, recstorage.S3Config{Bucket: "recordings", Endpoint: srv.Endpoint, PathStyle: true,
			AccessKey: "key", SecretKey: "secret", UploadDeadline: 30 * time.Second, RetryWaitMin: 200 * time.Millisecond, RetryWaitMax: 500 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		dir, mp4 := rendered(t, t.TempDir(), "ses_L")
		// The service comes up 1.5 s late. The goroutine is the test's:
		// it ends before the test does (Restart polls until the service
		// answers, which may be after the upload went through).
		up := make(chan struct{})
		go func() {
			defer close(up)
			time.Sleep(1500 * time.Millisecond)
			srv.Restart()
		}()
		begin := time.Now()
		err = st.Publish(ctx, "ses_L", dir)
		<-up
		if err != nil {
			t.Fatal(err)
		}
		if took := time.Since(begin); took < 1500*time.Millisecond {
			t.Errorf("uploaded after %s, before the service was up", took)
		}
		got, err := os.ReadFile(srv.ObjectFile("ses_L/talk.mp4"))
		if err != nil || !bytes.Equal(got, mp4) {
			t.Errorf("stored object: %d bytes, %v", len(got), err)
		}
	})
	t.Run("service gone", func(t *testing.T) {
		srv := s3test.Reserve(t, "recordings") // never started
		st, err := recstorage.NewS3(ctx, recstorage.S3Config{Bucket: "recordings", Endpoint: srv.Endpoint, PathStyle: true,
			AccessKey: "key", SecretKey: "secret", UploadDeadline: 2 * time.Second, RetryWaitMin: 200 * time.Millisecond, RetryWaitMax: 400 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		dir, _ := rendered(t, t.TempDir(), "ses_G")
		begin := time.Now()
		err = st.Publish(ctx, "ses_G", dir)
		took := time.Since(begin)
		if err == nil || !strings.Contains(err.Error(), "gave up after") {
			t.Fatalf("Publish to a service that never answers: %v", err)
		}
		if took > 4*time.Second {
			t.Errorf("gave up after %s, deadline 2 s", took)
		}
		if _, err := os.Stat(filepath.Join(dir, "talk.mp4")); err != nil {
			t.Errorf("the local files after a failed upload: %v, want kept", err)
		}
		t.Logf("gave up after %s: %v", took.Round(10*time.Millisecond), err)
	})
}

func TestNewS3NeedsABucket(t *testing.T) {
	if _, err := recstorage.NewS3(context.Background(), recstorage.S3Config{Bucket: "/"}); err == nil {
		t.Error("NewS3 without a bucket: no error")
	}
}
