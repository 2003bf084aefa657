package medianodes

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chorus-rtc/chorus/shared/mediaapi"
)

// fakeNode serves a media node's liveness stream and health check.
type fakeNode struct {
	srv    *httptest.Server
	opens  atomic.Int32
	frozen atomic.Bool // the stream stops writing and health hangs: SIGSTOP
	hangup chan struct{}
}

func startFakeNode(t *testing.T) *fakeNode {
	f := &fakeNode{hangup: make(chan struct{}, 1)}
	mux := http.NewServeMux()
	mux.HandleFunc(mediaapi.RouteLiveness, func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer s3cret" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		f.opens.Add(1)
		w.WriteHeader(http.StatusOK)
		for {
			if !f.frozen.Load() {
				_, _ = io.WriteString(w, "alive\n")
				http.NewResponseController(w).Flush()
			}
			select {
			case <-r.Context().Done():
				return
			case <-f.hangup: // the node ends the stream but stays up
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	})
	mux.HandleFunc("GET /chorus/health", func(w http.ResponseWriter, r *http.Request) {
		for f.frozen.Load() {
			select {
			case <-r.Context().Done():
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
		w.WriteHeader(http.StatusOK)
	})
	f.srv = httptest.NewServer(mux)
	t.Cleanup(f.srv.Close)
	return f
}

// kill closes the listener and every connection, as the kernel does for a
// process that dies.
func (f *fakeNode) kill() {
	f.srv.Listener.Close()
	f.srv.CloseClientConnections()
}

func waitFor(t *testing.T, what string, within time.Duration, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, within)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestLivenessFollowers: a node whose stream ends and which then fails two
// checks is lost within milliseconds; a node that is frozen (stream silent,
// checks hanging) or ends its stream but still answers is not, and its
// stream is reopened; a node that refuses the stream (an older node, a wrong
// secret) is never lost by this path.
func TestLivenessFollowers(t *testing.T) {
	client := &http.Client{}
	check := func(ctx context.Context, n nodeAddr) error { return checkHealth(ctx, client, n.URI) }
	lost := make(chan struct{}, 8)
	fs := newFollowers(client, "s3cret", check, func() { lost <- struct{}{} }, slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	defer fs.stop()

	t.Run("killed", func(t *testing.T) {
		n := startFakeNode(t)
		fs.follow(ctx, nodeAddr{ID: "media_killed", URI: n.srv.URL})
		waitFor(t, "stream open", 5*time.Second, func() bool { return n.opens.Load() == 1 })
		killed := time.Now()
		n.kill()
		select {
		case <-lost:
		case <-time.After(5 * time.Second):
			t.Fatal("a killed node was not lost within 5 s")
		}
		at := fs.lostAt("media_killed")
		if took := at.Sub(killed); at.IsZero() || took > time.Second {
			t.Errorf("lost %s after the kill (at %v), want within 1 s", took, at)
		}
		t.Logf("killed node lost after %s", time.Since(killed).Round(time.Millisecond))
		fs.unfollow("media_killed")
		if !fs.lostAt("media_killed").IsZero() {
			t.Error("an unfollowed node still reads as lost")
		}
	})

	t.Run("frozen", func(t *testing.T) {
		n := startFakeNode(t)
		fs.follow(ctx, nodeAddr{ID: "media_frozen", URI: n.srv.URL})
		t.Cleanup(func() { fs.unfollow("media_frozen") })
		waitFor(t, "stream open", 5*time.Second, func() bool { return n.opens.Load() == 1 })
		n.frozen.Store(true)
		time.Sleep(2 * time.Second)
		n.frozen.Store(false)
		time.Sleep(200 * time.Millisecond)
		if at := fs.lostAt("media_frozen"); !at.IsZero() || len(lost) > 0 {
			t.Errorf("a node frozen 2 s was lost at %v", at)
		}
		if n.opens.Load() != 1 {
			t.Errorf("stream opened %d times, want once (it never ended)", n.opens.Load())
		}
	})

	t.Run("ended but answering", func(t *testing.T) {
		n := startFakeNode(t)
		fs.follow(ctx, nodeAddr{ID: "media_ended", URI: n.srv.URL})
		t.Cleanup(func() { fs.unfollow("media_ended") })
		waitFor(t, "stream open", 5*time.Second, func() bool { return n.opens.Load() == 1 })
		n.hangup <- struct{}{}
		waitFor(t, "stream reopened", 5*time.Second, func() bool { return n.opens.Load() == 2 })
		if at := fs.lostAt("media_ended"); !at.IsZero() || len(lost) > 0 {
			t.Errorf("a node that ended its stream but answers was lost at %v", at)
		}
	})

	t.Run("refused", func(t *testing.T) {
		n := startFakeNode(t)
		other := newFollowers(client, "wrong", check, func() { lost <- struct{}{} }, slog.New(slog.DiscardHandler))
		defer other.stop()
		other.follow(ctx, nodeAddr{ID: "media_refused", URI: n.srv.URL})
		t.Cleanup(func() { other.unfollow("media_refused") })
		time.Sleep(300 * time.Millisecond)
		n.kill()
		time.Sleep(1500 * time.Millisecond)
		if at := other.lostAt("media_refused"); !at.IsZero() || len(lost) > 0 {
			t.Errorf("a node whose stream never opened was lost at %v", at)
		}
	})

	t.Run("unreachable", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		uri := "http://" + l.Addr().String()
		l.Close()
		fs.follow(ctx, nodeAddr{ID: "media_unreachable", URI: uri})
		time.Sleep(1500 * time.Millisecond)
		if at := fs.lostAt("media_unreachable"); !at.IsZero() || len(lost) > 0 {
			t.Errorf("a node never reached was lost at %v", at)
		}
	})
}
