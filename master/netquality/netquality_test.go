package netquality

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/chorus-rtc/chorus/shared/mediaapi"
	"github.com/chorus-rtc/chorus/shared/protocol"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// node serves the media node API's network quality route with answer,
// checking the cluster secret.
func node(t *testing.T, answer mediaapi.NetworkQuality, calls *atomic.Int32) *httptest.Server {
	mux := http.NewServeMux()
	mux.HandleFunc(mediaapi.RouteNetworkQuality, func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		if r.Header.Get("Authorization") != "Bearer cluster-secret" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		_ = json.NewEncoder(w).Encode(answer)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func TestPollGroupsBySession(t *testing.T) {
	var calls atomic.Int32
	a := node(t, mediaapi.NetworkQuality{Connections: []mediaapi.ConnectionQuality{
		{SessionID: "s1", ConnectionID: "con_a", Level: 5},
		{SessionID: "s2", ConnectionID: "con_b", Level: 1},
	}}, &calls)
	b := node(t, mediaapi.NetworkQuality{Connections: []mediaapi.ConnectionQuality{
		{SessionID: "s1", ConnectionID: "con_c", Level: 3},
	}}, &calls)
	broken := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusInternalServerError) }))
	t.Cleanup(broken.Close)

	var mu sync.Mutex
	applied := map[protocol.SessionID]map[protocol.ConnectionID]int{}
	m := New(Config{
		Interval: time.Second, Leading: func() bool { return true },
		Nodes:      func(context.Context) ([]string, error) { return []string{a.URL, b.URL, broken.URL}, nil },
		HTTPClient: http.DefaultClient, ClusterSecret: "cluster-secret",
		Apply: func(_ context.Context, sid protocol.SessionID, levels map[protocol.ConnectionID]int) error {
			mu.Lock()
			defer mu.Unlock()
			applied[sid] = levels
			return nil
		},
	})
	m.Poll(context.Background())
	want := map[protocol.SessionID]map[protocol.ConnectionID]int{
		"s1": {"con_a": 5, "con_c": 3},
		"s2": {"con_b": 1},
	}
	if !reflect.DeepEqual(applied, want) {
		t.Errorf("applied %v, want %v (a broken node skipped)", applied, want)
	}
	if calls.Load() != 2 {
		t.Errorf("%d calls to the two nodes, want 2", calls.Load())
	}
}

func TestRunPollsOnlyWhileLeading(t *testing.T) {
	var calls atomic.Int32
	srv := node(t, mediaapi.NetworkQuality{}, &calls)
	var leading atomic.Bool
	m := New(Config{
		Interval: 20 * time.Millisecond, Leading: leading.Load,
		Nodes:      func(context.Context) ([]string, error) { return []string{srv.URL}, nil },
		HTTPClient: http.DefaultClient, ClusterSecret: "cluster-secret",
		Apply: func(context.Context, protocol.SessionID, map[protocol.ConnectionID]int) error { return nil },
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	time.Sleep(150 * time.Millisecond)
	if n := calls.Load(); n != 0 {
		t.Errorf("%d polls while not leading", n)
	}
	leading.Store(true)
	deadline := time.Now().Add(5 * time.Second)
	for calls.Load() < 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if calls.Load() < 2 {
		t.Errorf("%d polls while leading, want them every interval", calls.Load())
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
}
