package medianode_test

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/chorus-rtc/chorus/clustertest"
	"github.com/chorus-rtc/chorus/shared/config"
	"github.com/chorus-rtc/chorus/shared/mediaapi"
)

// TestLivenessStream: a media node keeps its liveness stream open, a line a
// second, past http.read_timeout, to holders of the cluster secret only; the
// stream ends when the node stops.
func TestLivenessStream(t *testing.T) {
	c := clustertest.Start(t, clustertest.Options{MediaNodes: 1, Configure: func(cfg *config.Config) {
		cfg.HTTP.ReadTimeout = 500 * time.Millisecond
	}})
	streams := &http.Client{}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	var wrong *mediaapi.Error
	if err := mediaapi.NewClient(streams, c.MediaNodeURLs[0], "wrong").WatchLiveness(ctx, func() { t.Error("opened with a wrong secret") }); !errors.As(err, &wrong) || wrong.Status != http.StatusUnauthorized {
		t.Fatalf("stream with a wrong secret: %v, want 401", err)
	}

	opened := make(chan time.Time, 1)
	ended := make(chan error, 1)
	go func() {
		ended <- mediaapi.NewClient(streams, c.MediaNodeURLs[0], clustertest.ClusterSecret).WatchLiveness(ctx, func() { opened <- time.Now() })
	}()
	select {
	case <-opened:
	case err := <-ended:
		t.Fatalf("stream did not open: %v", err)
	}
	select {
	case err := <-ended:
		t.Fatalf("stream ended while the node runs (read timeout 500 ms): %v", err)
	case <-time.After(2 * time.Second):
	}
	stopped := time.Now()
	go c.Stop("media_1")
	select {
	case err := <-ended:
		if !errors.Is(err, mediaapi.ErrLivenessClosed) {
			t.Errorf("stream ended with %v, want ErrLivenessClosed", err)
		}
		t.Logf("stream ended %s after the node was told to stop", time.Since(stopped).Round(time.Millisecond))
	case <-time.After(15 * time.Second):
		t.Fatal("stream still open 15 s after the node was stopped")
	}
}
