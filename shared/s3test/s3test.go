// Package s3test runs a real S3-protocol server for tests: gofakes3's own
// command (a go.mod tool, built by the go command) as a separate process,
// keeping its objects in a directory (its fs backend), never an in-process
// stub.
package s3test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

var (
	buildOnce sync.Once
	binPath   string
	errBuild  error
)

// binary builds gofakes3 once per test binary: `go tool -n` builds the
// module's tool into the go command's cache and prints its path.
func binary() (string, error) {
	buildOnce.Do(func() {
		out, err := exec.Command("go", "tool", "-n", "gofakes3").Output()
		if err != nil {
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				err = fmt.Errorf("%w: %s", err, ee.Stderr)
			}
			errBuild = fmt.Errorf("s3test: build gofakes3 (a tool of go.mod): %w", err)
			return
		}
		binPath = strings.TrimSpace(string(out))
	})
	return binPath, errBuild
}

// Server is a running S3 server.
type Server struct {
	// Endpoint is its URL (path-style buckets), Bucket the bucket created
	// at start, Dir where it keeps objects.
	Endpoint, Bucket, Dir string
	Addr                  string

	t   testing.TB
	mu  sync.Mutex
	cmd *exec.Cmd
}

// Start runs a server with bucket on a free loopback port until the test
// ends.
func Start(t testing.TB, bucket string) *Server {
	t.Helper()
	s := Reserve(t, bucket)
	s.Restart()
	return s
}

// Reserve returns a server that is not running yet: its address is chosen,
// Restart starts it (an endpoint that comes up late).
func Reserve(t testing.TB, bucket string) *Server {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	s := &Server{Endpoint: "http://" + addr, Bucket: bucket, Dir: t.TempDir(), Addr: addr, t: t}
	t.Cleanup(s.Stop)
	return s
}

// Restart starts the server (again), keeping its objects, and waits until
// it answers.
func (s *Server) Restart() {
	t := s.t
	t.Helper()
	bin, err := binary()
	if err != nil {
		t.Fatal(err)
	}
	s.Stop()
	cmd := exec.Command(bin, "-backend", "fs", "-fs.path", s.Dir, "-fs.create", "-host", s.Addr,
		"-initialbucket", s.Bucket, "-quiet")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("s3test: start gofakes3: %v", err)
	}
	s.mu.Lock()
	s.cmd = cmd
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodHead, s.Endpoint+"/"+s.Bucket, nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			_ = resp.Body.Close()
			return
		}
		if ctx.Err() != nil {
			t.Fatalf("s3test: gofakes3 on %s never answered: %v", s.Addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop kills the server (SIGKILL) and waits for it; its objects stay.
func (s *Server) Stop() {
	s.mu.Lock()
	cmd := s.cmd
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	var ee *exec.ExitError
	if err := cmd.Wait(); err != nil && !errors.As(err, &ee) {
		s.t.Logf("s3test: gofakes3: %v", err)
	}
}

// ObjectFile is where the server keeps the object key of its bucket (its
// fs backend: <Dir>/buckets/<bucket>/<key>).
func (s *Server) ObjectFile(key string) string {
	return filepath.Join(s.Dir, "buckets", s.Bucket, filepath.FromSlash(key))
}

// Pid is the running server's process id (0 when stopped).
func (s *Server) Pid() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return 0
	}
	return s.cmd.Process.Pid
}

// String describes the server.
func (s *Server) String() string {
	return "gofakes3 " + s.Endpoint + " bucket " + s.Bucket + " pid " + strconv.Itoa(s.Pid())
}
